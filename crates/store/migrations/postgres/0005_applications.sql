-- Applications: OAuth2 clients that own subscriptions. The client secret is kept only as an
-- argon2 hash; access tokens only as their SHA-256 (they are random and long).
CREATE TABLE applications (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    client_id       TEXT NOT NULL UNIQUE,
    secret_hash     TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until    BIGINT
);
CREATE TABLE access_tokens (
    token_hash      TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX access_tokens_application ON access_tokens (application_id);
CREATE INDEX access_tokens_expiry ON access_tokens (expires_at);
