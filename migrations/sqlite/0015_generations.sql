-- Document generations (docs/sync.md): erasing an entry from a case's history writes the
-- case anew as a new document and tombstones the old one. The case keeps its identity:
-- the first generation's document id.
--
-- A tombstone of a rewritten document names its successor, the case, and the hashes of
-- the changes the server held (hex, 64 characters a change; no content), so a phone that
-- comes back with the old generation can tell its own unsynced edits and replay them.
ALTER TABLE tombstones ADD COLUMN successor TEXT;
ALTER TABLE tombstones ADD COLUMN case_id TEXT;
ALTER TABLE tombstones ADD COLUMN known_changes TEXT;
CREATE INDEX tombstones_by_case ON tombstones (case_id);

-- The case a document is a later generation of; NULL for a first generation (its own id).
ALTER TABLE documents ADD COLUMN case_id TEXT;

-- Who created each entry of a rewritten case: the actor of the change that created it in
-- an earlier generation (the new generation's only change is the server's).
CREATE TABLE carried_creators (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    entry_map   TEXT NOT NULL,
    entry_id    TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    PRIMARY KEY (document_id, entry_map, entry_id)
);
