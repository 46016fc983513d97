-- Rate-limit counters (server/src/ratelimit.rs), in the database so that every server
-- instance of one database counts the same guesses: behind one proxy, attempts spread
-- over the instances still meet one limit. `key` is a SHA-256 of what is limited (an
-- address, an account at an address), so the table shows no e-mail or IP address in the
-- clear. A row whose `expires_at` has passed is forgotten, and swept away.
CREATE TABLE rate_limits (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    last_failure  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX rate_limits_by_expiry ON rate_limits (expires_at);
