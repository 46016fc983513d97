-- Organisations, coordinators, volunteers, devices and the audit trail.
-- Times are milliseconds since the Unix epoch (BIGINT), ids are UUID text, lists are
-- JSON text: the same shapes on SQLite and PostgreSQL, so one query serves both.

CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    slug        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE coordinators (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    email           TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE coordinator_sessions (
    token_hash      TEXT PRIMARY KEY,
    coordinator_id  TEXT NOT NULL REFERENCES coordinators (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX coordinator_sessions_by_coordinator ON coordinator_sessions (coordinator_id);

CREATE TABLE volunteers (
    id                TEXT PRIMARY KEY,
    organisation_id   TEXT NOT NULL REFERENCES organisations (id),
    display_name      TEXT NOT NULL,
    languages         TEXT NOT NULL,
    topics            TEXT NOT NULL,
    availability      TEXT NOT NULL,
    active            BIGINT NOT NULL,
    pledge_signed_on  TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX volunteers_by_organisation ON volunteers (organisation_id, display_name);

CREATE TABLE enrollment_codes (
    code_hash     TEXT PRIMARY KEY,
    volunteer_id  TEXT NOT NULL REFERENCES volunteers (id) ON DELETE CASCADE,
    created_by    TEXT NOT NULL REFERENCES coordinators (id),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    device_id     TEXT
);

CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    volunteer_id  TEXT NOT NULL REFERENCES volunteers (id),
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX devices_by_volunteer ON devices (volunteer_id);

CREATE TABLE audit_events (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    at              BIGINT NOT NULL,
    actor_kind      TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    action          TEXT NOT NULL,
    subject_kind    TEXT NOT NULL,
    subject_id      TEXT NOT NULL
);
CREATE INDEX audit_events_by_organisation ON audit_events (organisation_id, at);
