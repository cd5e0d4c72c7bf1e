CREATE TABLE event_types (
    name        TEXT PRIMARY KEY,
    description TEXT,
    schema      TEXT,
    examples    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX event_types_created ON event_types (created_at, name);
INSERT INTO revisions (name, value) VALUES ('event_types', 0);
