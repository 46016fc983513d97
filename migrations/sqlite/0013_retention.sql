-- Retention (issue 15): how long a network keeps closed cases, the personal fields of
-- finished requests and its audit trail, and what it keeps of a deleted case so that its
-- reports about past years do not change. The purge job (server/src/purge.rs) carries
-- the settings out every hour.
ALTER TABLE organisations ADD COLUMN case_retention_months BIGINT NOT NULL DEFAULT 24;
ALTER TABLE organisations ADD COLUMN request_retention_days BIGINT NOT NULL DEFAULT 30;
ALTER TABLE organisations ADD COLUMN audit_retention_months BIGINT NOT NULL DEFAULT 24;

-- When the server learned that a case was closed (its clock, not a phone's); NULL while
-- it is not closed. Cases closed before this migration count from their last index write.
ALTER TABLE case_index ADD COLUMN closed_at BIGINT;
UPDATE case_index SET closed_at = updated_at WHERE status = 'closed';
CREATE INDEX case_index_by_closing ON case_index (organisation_id, status, closed_at);

-- When the purge erased a finished request's contact, address, description and person
-- label; NULL for a request that still holds them.
ALTER TABLE requests ADD COLUMN erased_at BIGINT;

-- The de-identified figures of a deleted case, written in the transaction that deletes
-- it: no document id, label, note or place, only what the reports count. `started` is
-- the local month the case began (YYYY-MM); `kind` is the case's kind once the schema
-- has one (Einzelbegleitung, Patenschaft), NULL until then.
CREATE TABLE kept_cases (
    id               TEXT PRIMARY KEY,
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    started          TEXT NOT NULL,
    topic            TEXT NOT NULL,
    languages        TEXT NOT NULL,
    kind             TEXT
);
CREATE INDEX kept_cases_by_month ON kept_cases (organisation_id, started);

-- Its hours and travel, summed per person and month (YYYY-MM of the entries' days):
-- enough for the reports and a volunteer's yearly statement, not a diary of the days.
-- `author_id` is whose time it was as the readers attribute it (a volunteer, or a
-- coordinator who logged it); no foreign key, so erasing a volunteer leaves the sums.
CREATE TABLE kept_hours (
    kept_case_id     TEXT NOT NULL REFERENCES kept_cases (id),
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    month            TEXT NOT NULL,
    author_id        TEXT NOT NULL,
    minutes          BIGINT NOT NULL,
    travel_minutes   BIGINT NOT NULL,
    PRIMARY KEY (kept_case_id, month, author_id)
);
CREATE INDEX kept_hours_by_month ON kept_hours (organisation_id, month);
