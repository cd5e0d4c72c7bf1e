-- Times are milliseconds since the Unix epoch (BIGINT), JSON is TEXT: the same column types
-- read back the same way on SQLite and PostgreSQL.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Counters bumped in the same transaction as the rows they describe; processes poll them to
-- learn that their in-memory copy (the subscription index) is stale.
CREATE TABLE revisions (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO revisions (name, value) VALUES ('subscriptions', 0);

CREATE TABLE subscriptions (
    id                    TEXT PRIMARY KEY,
    owner                 TEXT NOT NULL,
    spec                  TEXT NOT NULL,
    disabled_reason       TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    deleted_at            BIGINT
);
CREATE INDEX subscriptions_owner ON subscriptions (owner, id);

CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL,
    publisher   TEXT NOT NULL,
    name        TEXT NOT NULL,
    origin      TEXT,
    tenant      TEXT,
    data        TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (publisher, id)
);
CREATE INDEX events_id ON events (id);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event_seq       BIGINT NOT NULL,
    subscription_id TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease           TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_event ON deliveries (event_seq);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
CREATE INDEX deliveries_lease ON deliveries (lease) WHERE lease IS NOT NULL;

CREATE TABLE attempts (
    delivery_id TEXT NOT NULL,
    number      BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    request     TEXT NOT NULL,
    response    TEXT,
    error       TEXT,
    outcome     TEXT NOT NULL,
    PRIMARY KEY (delivery_id, number)
);
