-- Requests (Einsatzanfragen), offers to volunteers and the full history of both.
-- Decided by the server in SQL: who got a request is never a CRDT merge.

CREATE TABLE requests (
    id                     TEXT PRIMARY KEY,
    organisation_id        TEXT NOT NULL REFERENCES organisations (id),
    source                 TEXT NOT NULL,
    institution_kind       TEXT NOT NULL,
    institution_name       TEXT NOT NULL,
    contact                TEXT,
    person_label           TEXT NOT NULL,
    topic                  TEXT NOT NULL,
    languages              TEXT NOT NULL,
    starts_at              BIGINT NOT NULL,
    ends_at                BIGINT NOT NULL,
    -- Coarse area (district) shown in offers; the exact address only to the assignee.
    place_area             TEXT NOT NULL,
    place_address          TEXT,
    urgency                TEXT NOT NULL,
    description            TEXT NOT NULL,
    status                 TEXT NOT NULL,
    assigned_volunteer_id  TEXT REFERENCES volunteers (id),
    case_document_id       TEXT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);
CREATE INDEX requests_by_organisation ON requests (organisation_id, status, starts_at);

CREATE TABLE offers (
    request_id    TEXT NOT NULL REFERENCES requests (id),
    volunteer_id  TEXT NOT NULL REFERENCES volunteers (id),
    status        TEXT NOT NULL,
    offered_at    BIGINT NOT NULL,
    answered_at   BIGINT,
    PRIMARY KEY (request_id, volunteer_id)
);
CREATE INDEX offers_by_volunteer ON offers (volunteer_id, status);

CREATE TABLE request_events (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    at          BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    volunteer_id TEXT
);
CREATE INDEX request_events_by_request ON request_events (request_id, at);
