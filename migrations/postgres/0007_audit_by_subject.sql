-- A record's page lists who read and changed it: look audit events up by their subject.
CREATE INDEX audit_events_by_subject ON audit_events (organisation_id, subject_kind, subject_id, at);
