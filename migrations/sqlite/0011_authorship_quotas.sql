-- Authorship is derived, not believed: every automerge actor is bound to the device (and
-- its volunteer) or the coordinator that first wrote with it, and nobody else may write
-- with it. Readers attribute notes and hours by this table, not by the `author` field.
CREATE TABLE actors (
    actor_id        TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    device_id       TEXT,
    volunteer_id    TEXT,
    coordinator_id  TEXT,
    first_seen_at   BIGINT NOT NULL
);
CREATE INDEX actors_by_organisation ON actors (organisation_id);

-- What a device's changes take on the server over all documents (its quota).
ALTER TABLE devices ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
