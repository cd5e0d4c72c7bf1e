-- The subscription's circuit as the dispatchers last opened it: until when its backlog is
-- postponed (NULL: closed), after how many failures in a row. What the API shows; each process
-- keeps its own breaker in memory.
ALTER TABLE subscriptions ADD COLUMN circuit_until BIGINT;
ALTER TABLE subscriptions ADD COLUMN circuit_failures INTEGER NOT NULL DEFAULT 0;
