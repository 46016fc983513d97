-- A coordinator's browser hears of new requests only while the login that turned
-- notifications on lasts: logging out (or the session expiring) ends them, so a shared
-- office computer does not keep announcing requests to whoever sits at it next.
-- Subscriptions from before this migration have no session and stay silent until the
-- coordinator turns notifications on again in that browser.
ALTER TABLE push_subscriptions ADD COLUMN session_hash TEXT;
CREATE INDEX push_subscriptions_by_session ON push_subscriptions (session_hash);
