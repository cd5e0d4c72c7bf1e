SELECT nextval('s') AS b \gset
BEGIN;
INSERT INTO l_b (id, event_seq, subscription_id, status, attempts, created_at, updated_at)
 SELECT lpad(i::text, 26, '0'), i, 'sub_0000000000000000000001', 'pending', 0, 1, 1 FROM generate_series(:b, :b + 63) i;
INSERT INTO q_b (delivery_id, subscription_id, event_seq, next_attempt_at, lease)
 SELECT lpad(i::text, 26, '0'), 'sub_0000000000000000000001', i, 1000, 'me' FROM generate_series(:b, :b + 63) i;
COMMIT;
