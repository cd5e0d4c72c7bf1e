SELECT nextval('s') AS b \gset
BEGIN;
INSERT INTO l_b (id, event_seq, subscription_id, status, attempts, created_at, updated_at)
 SELECT lpad(i::text, 26, '0'), i, 'sub_0000000000000000000001', 'pending', 0, 1, 1 FROM generate_series(:b, :b + 63) i;
INSERT INTO q_b (delivery_id, subscription_id, event_seq, next_attempt_at, lease)
 SELECT lpad(i::text, 26, '0'), 'sub_0000000000000000000001', i, 1000, 'me' FROM generate_series(:b, :b + 63) i;
COMMIT;
BEGIN;
DELETE FROM q_b WHERE delivery_id IN (SELECT lpad(i::text, 26, '0') FROM generate_series(:b, :b + 63) i) AND lease = 'me';
UPDATE l_b SET status = 'succeeded', attempts = 1, updated_at = 2 FROM (SELECT lpad(i::text, 26, '0') AS id FROM generate_series(:b, :b + 63) i) v WHERE l_b.id = v.id;
COMMIT;
