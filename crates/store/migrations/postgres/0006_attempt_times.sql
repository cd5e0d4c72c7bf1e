-- The dashboard's charts count attempts by time (GET /v1/stats): without this, every chart would
-- read the whole attempt log.
CREATE INDEX attempts_started ON attempts (started_at);
