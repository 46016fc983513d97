-- Web Push: subscriptions of volunteers' devices and coordinators' browsers, and the
-- outbox of pending sends (written in the transaction of the decision it announces,
-- deleted only once the push service has accepted the message).

CREATE TABLE push_subscriptions (
    id               TEXT PRIMARY KEY,
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    -- Exactly one owner: a device or a coordinator.
    device_id        TEXT REFERENCES devices (id) ON DELETE CASCADE,
    coordinator_id   TEXT REFERENCES coordinators (id) ON DELETE CASCADE,
    -- The push resource URL: a capability, never logged.
    endpoint         TEXT NOT NULL UNIQUE,
    -- base64url without padding: the subscriber's P-256 point (65 bytes) and auth secret (16).
    p256dh           TEXT NOT NULL,
    auth             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CHECK ((device_id IS NULL) <> (coordinator_id IS NULL))
);
CREATE INDEX push_subscriptions_by_device ON push_subscriptions (device_id);
CREATE INDEX push_subscriptions_by_coordinator ON push_subscriptions (coordinator_id);

CREATE TABLE push_outbox (
    id               TEXT PRIMARY KEY,
    -- No foreign key on purpose: queueing a notice (in the transaction of a decision)
    -- must never wait for or fail on a subscription being deleted at the same moment.
    -- Rows of a deleted subscription are deleted with it, or discarded when claimed.
    subscription_id  TEXT NOT NULL,
    -- offer, taken, cancelled
    kind             TEXT NOT NULL,
    -- The Web Push `Topic` header (request id + kind): a newer notice with the same topic
    -- replaces a pending one, here and at the push service.
    push_topic       TEXT NOT NULL,
    -- The plaintext JSON (no personal data); encrypted per attempt.
    payload          TEXT NOT NULL,
    urgency          TEXT NOT NULL,
    -- The TTL made absolute: each attempt sends the time left; past it the row is dropped.
    expires_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    -- When the next attempt is due; while claimed, when the claim lapses.
    next_attempt_at  BIGINT NOT NULL,
    -- Set by the worker that is sending it; a completion only counts with the same token.
    claim_token      TEXT,
    claimed_at       BIGINT,
    created_at       BIGINT NOT NULL,
    UNIQUE (subscription_id, push_topic)
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_at);
