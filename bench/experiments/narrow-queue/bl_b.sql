CREATE TEMP TABLE IF NOT EXISTS c (id text);
BEGIN;
TRUNCATE c;
WITH x AS (UPDATE q_b SET next_attempt_at = 9000000000, lease = 'me' WHERE delivery_id IN (SELECT delivery_id FROM q_b WHERE next_attempt_at <= 1000000 ORDER BY next_attempt_at LIMIT 256 FOR UPDATE SKIP LOCKED) RETURNING delivery_id, event_seq, subscription_id, order_key) INSERT INTO c SELECT delivery_id FROM x;
COMMIT;
BEGIN;
DELETE FROM q_b USING c WHERE q_b.delivery_id = c.id AND lease = 'me';
UPDATE l_b SET status = 'succeeded', attempts = 1, updated_at = 2 FROM c v WHERE l_b.id = v.id;
COMMIT;
