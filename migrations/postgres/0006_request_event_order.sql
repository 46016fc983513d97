-- The history of a request in the order it was written. Two events often share a
-- millisecond (created and edited by a quick coordinator; an accept and a late accept),
-- and ordering by time then id shuffled them. Each event now gets the next number of its
-- request; events written before this migration keep 0 and their time order.
ALTER TABLE request_events ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
