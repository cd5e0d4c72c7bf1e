INSERT INTO l_b (id, event_seq, subscription_id, status, attempts, created_at, updated_at)
 SELECT lpad(i::text, 26, '0'), i, 'sub_0000000000000000000001', 'pending', 0, 1, 1 FROM generate_series(1, 300000) i;
INSERT INTO q_b (delivery_id, subscription_id, event_seq, next_attempt_at, lease)
 SELECT lpad(i::text, 26, '0'), 'sub_0000000000000000000001', i, i, NULL FROM generate_series(1, 300000) i;
