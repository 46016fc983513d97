-- The team (issue 18): coordinators get a role (leitung may manage coordinators, the
-- organisation's settings and deletions; koordination does the daily work), can be
-- deactivated, and log in with a second factor (TOTP, RFC 6238) and recovery codes.
-- Everyone who existed before is Leitung: they could do all of it until now.
ALTER TABLE coordinators ADD COLUMN role TEXT NOT NULL DEFAULT 'leitung';
ALTER TABLE coordinators ADD COLUMN deactivated_at BIGINT;
-- The TOTP secret (base32), sealed under the server key when there is one.
ALTER TABLE coordinators ADD COLUMN totp_secret TEXT;
-- The last time step a code was accepted for: a code works once (RFC 6238, 5.2).
ALTER TABLE coordinators ADD COLUMN totp_last_step BIGINT;
-- 1: the organisation requires a second factor of every coordinator, not only Leitung.
ALTER TABLE organisations ADD COLUMN two_factor_for_all BIGINT NOT NULL DEFAULT 0;

-- One-time links: an invitation (set a first password) or a password reset. Only the
-- hash of the token is kept; the link is shown once and, with SMTP, e-mailed.
CREATE TABLE coordinator_links (
    token_hash      TEXT PRIMARY KEY,
    coordinator_id  TEXT NOT NULL REFERENCES coordinators (id) ON DELETE CASCADE,
    -- invite, reset
    purpose         TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT
);
CREATE INDEX coordinator_links_by_coordinator ON coordinator_links (coordinator_id);

-- Recovery codes for a lost second factor: SHA-256 of each, each usable once.
CREATE TABLE recovery_codes (
    coordinator_id  TEXT NOT NULL REFERENCES coordinators (id) ON DELETE CASCADE,
    code_hash       TEXT NOT NULL,
    used_at         BIGINT,
    PRIMARY KEY (coordinator_id, code_hash)
);

-- E-mails waiting for the SMTP server, sent by the mail worker with retries: written
-- in the transaction that made them, so a restart loses none. The body is sealed under
-- the server key when there is one (it may hold a one-time link) and the row is deleted
-- once the SMTP server took it.
CREATE TABLE email_outbox (
    id               TEXT PRIMARY KEY,
    organisation_id  TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claim_token      TEXT,
    last_error       TEXT
);
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at);
