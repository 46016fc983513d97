-- Organisation settings, starting with the device lease: a phone keeps its case data
-- readable only this many days after its last contact with the server, so a lost phone
-- that never comes back online destroys its keys by itself.
ALTER TABLE organisations ADD COLUMN device_lease_days BIGINT NOT NULL DEFAULT 30;
