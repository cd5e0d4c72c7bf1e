CREATE TEMP TABLE IF NOT EXISTS c (id text);
BEGIN;
TRUNCATE c;
WITH x AS (UPDATE d_a SET next_attempt_at = 9000000000, lease = 'me' WHERE id IN (SELECT id FROM d_a WHERE status = 'pending' AND next_attempt_at <= 1000000 ORDER BY next_attempt_at LIMIT 256 FOR UPDATE SKIP LOCKED) RETURNING id, event_seq, subscription_id, attempts, order_key) INSERT INTO c SELECT id FROM x;
COMMIT;
UPDATE d_a SET status = 'succeeded', attempts = 1, next_attempt_at = 5, lease = NULL, updated_at = 2 FROM c v WHERE d_a.id = v.id AND d_a.lease = 'me';
