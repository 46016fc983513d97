-- Automerge documents (cases, schedules, and documents peers create), stored as chunks:
-- snapshots and incremental changes, compacted into a new snapshot from time to time.

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE documents (
    id                  TEXT PRIMARY KEY,
    organisation_id     TEXT NOT NULL REFERENCES organisations (id),
    kind                TEXT NOT NULL,
    -- The volunteer whose device created it (schedules, offline cases); NULL otherwise.
    owner_volunteer_id  TEXT REFERENCES volunteers (id),
    -- Hex change hashes, sorted, comma separated: lets catch-up compare without loading.
    heads               TEXT NOT NULL,
    chunk_count         BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX documents_by_organisation ON documents (organisation_id);
CREATE INDEX documents_by_owner ON documents (owner_volunteer_id);

CREATE TABLE document_chunks (
    document_id  TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    data         BLOB NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (document_id, seq)
);

-- Which volunteers a case is shared with (their devices may sync it).
CREATE TABLE document_access (
    document_id   TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    volunteer_id  TEXT NOT NULL REFERENCES volunteers (id),
    PRIMARY KEY (document_id, volunteer_id)
);
CREATE INDEX document_access_by_volunteer ON document_access (volunteer_id);

-- automerge sync state per (document, peer storage), so in-sync reconnects stay small.
CREATE TABLE sync_states (
    document_id  TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    peer_key     TEXT NOT NULL,
    state        BLOB NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (document_id, peer_key)
);

-- What the dashboard shows of each case, refreshed in the transaction of every change.
CREATE TABLE case_index (
    document_id          TEXT PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    organisation_id      TEXT NOT NULL REFERENCES organisations (id),
    label                TEXT NOT NULL,
    topic                TEXT NOT NULL,
    status               TEXT NOT NULL,
    languages            TEXT NOT NULL,
    last_change_at       BIGINT,
    next_appointment_at  BIGINT,
    note_count           BIGINT NOT NULL,
    hours_minutes        BIGINT NOT NULL,
    travel_minutes       BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX case_index_by_organisation ON case_index (organisation_id, status);

ALTER TABLE devices ADD COLUMN last_sync_at BIGINT;
