INSERT INTO d_a (id, event_seq, subscription_id, status, attempts, next_attempt_at, lease, created_at, updated_at)
 SELECT lpad(i::text, 26, '0'), i, 'sub_0000000000000000000001', 'pending', 0, i, NULL, 1, 1 FROM generate_series(1, 300000) i;
