-- Admin dashboard sessions ended by a sign-out, until they would have expired: every process
-- refuses them (each reads this table every second).
CREATE TABLE revoked_sessions (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
