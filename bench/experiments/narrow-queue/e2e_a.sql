SELECT nextval('s') AS b \gset
INSERT INTO d_a (id, event_seq, subscription_id, status, attempts, next_attempt_at, lease, created_at, updated_at)
 SELECT lpad(i::text, 26, '0'), i, 'sub_0000000000000000000001', 'pending', 0, 1000, 'me', 1, 1 FROM generate_series(:b, :b + 63) i;
UPDATE d_a SET status = 'succeeded', attempts = 1, next_attempt_at = 5, lease = NULL, updated_at = 2
 FROM (SELECT lpad(i::text, 26, '0') AS id FROM generate_series(:b, :b + 63) i) v WHERE d_a.id = v.id AND d_a.lease = 'me';
