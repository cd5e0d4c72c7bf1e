SELECT nextval('s') AS b \gset
INSERT INTO d_a (id, event_seq, subscription_id, status, attempts, next_attempt_at, lease, created_at, updated_at)
 SELECT lpad(i::text, 26, '0'), i, 'sub_0000000000000000000001', 'pending', 0, 1000, 'me', 1, 1 FROM generate_series(:b, :b + 63) i;
