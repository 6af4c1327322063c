-- At most one attempt in flight per (configuration, realm), across every node: a node
-- holds the stream's lease while its attempt runs; a lease that outlives its node
-- expires.
CREATE TABLE stream_leases (
    config_id BIGINT NOT NULL,
    realm_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (config_id, realm_id)
);
CREATE INDEX notifications_by_lease_owner ON notifications (lease_owner);
