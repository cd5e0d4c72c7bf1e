DROP TABLE IF EXISTS d_a, l_b, q_b; DROP SEQUENCE IF EXISTS s;
CREATE SEQUENCE s INCREMENT 64;
CREATE TABLE d_a (id TEXT PRIMARY KEY, event_seq BIGINT NOT NULL, subscription_id TEXT NOT NULL, status TEXT NOT NULL,
 attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL, lease TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, order_key TEXT);
CREATE INDEX d_a_due ON d_a (next_attempt_at) WHERE status = 'pending';
CREATE INDEX d_a_event ON d_a (event_seq);
CREATE INDEX d_a_sub ON d_a (subscription_id, id);
CREATE INDEX d_a_lease ON d_a (lease) WHERE lease IS NOT NULL;
CREATE INDEX d_a_ok ON d_a (subscription_id, order_key, event_seq) WHERE order_key IS NOT NULL AND status = 'pending';
CREATE INDEX d_a_feed ON d_a (subscription_id, event_seq) WHERE status = 'pending' AND next_attempt_at = 253402300799000;
CREATE TABLE l_b (id TEXT PRIMARY KEY, event_seq BIGINT NOT NULL, subscription_id TEXT NOT NULL, status TEXT NOT NULL,
 attempts BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, order_key TEXT) WITH (fillfactor = FF);
CREATE INDEX l_b_event ON l_b (event_seq);
CREATE INDEX l_b_sub ON l_b (subscription_id, id);
CREATE TABLE q_b (delivery_id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, event_seq BIGINT NOT NULL, next_attempt_at BIGINT NOT NULL, lease TEXT, order_key TEXT);
CREATE INDEX q_b_due ON q_b (next_attempt_at);
CREATE INDEX q_b_lease ON q_b (lease) WHERE lease IS NOT NULL;
CREATE INDEX q_b_ok ON q_b (subscription_id, order_key, event_seq) WHERE order_key IS NOT NULL;
CREATE INDEX q_b_feed ON q_b (subscription_id, event_seq) WHERE next_attempt_at = 253402300799000;
