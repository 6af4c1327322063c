-- One row per (configuration, entity, operation) a configuration subscribes to, so that
-- ingestion can fan events out to windows with one set-based statement.
CREATE TABLE config_subscriptions (
    config_id BIGINT NOT NULL,
    entity TEXT NOT NULL,
    operation TEXT NOT NULL,
    PRIMARY KEY (config_id, entity, operation)
);
CREATE INDEX config_subscriptions_by_change ON config_subscriptions (entity, operation);
