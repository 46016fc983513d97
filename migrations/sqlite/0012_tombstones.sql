-- A deleted document leaves only a tombstone: its id, whose it was, when and why (a
-- reason code, never content). The server refuses every change to a tombstoned id for
-- ever, so a phone or a plain automerge-repo client that comes back after months cannot
-- bring the document back.
CREATE TABLE tombstones (
    document_id     TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    kind            TEXT NOT NULL,
    deleted_at      BIGINT NOT NULL,
    reason          TEXT NOT NULL
);
CREATE INDEX tombstones_by_organisation ON tombstones (organisation_id, deleted_at);
