-- Foreign keys with ON DELETE CASCADE (see 0009_foreign_keys.postgres.sql for the rule
-- and for the tables left without keys).
-- SQLite adds a foreign key only by rebuilding the table: each child is made anew with
-- its keys, its rows copied (those without a parent left behind), the old one dropped and
-- the new one renamed; its indexes are made again. Children of children come after their
-- parents (webhook_configs before windows), so that no drop cascades. The connections
-- enforce keys from now on (`PRAGMA foreign_keys = ON`, set by the store).

CREATE TABLE app_secrets_new (
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    current_value TEXT NOT NULL,
    previous_value TEXT,
    grace_until BIGINT,
    rotated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);
INSERT INTO app_secrets_new SELECT app_id, name, current_value, previous_value, grace_until, rotated_at
    FROM app_secrets WHERE app_id IN (SELECT id FROM apps);
DROP TABLE app_secrets;
ALTER TABLE app_secrets_new RENAME TO app_secrets;

CREATE TABLE webhook_configs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    url TEXT NOT NULL,
    entities TEXT NOT NULL,
    format TEXT NOT NULL,
    batch_window_ms BIGINT,
    ordering TEXT,
    state TEXT NOT NULL,
    state_since BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (app_id, environment)
);
INSERT INTO webhook_configs_new SELECT id, app_id, environment, url, entities, format, batch_window_ms, ordering,
    state, state_since, last_error, created_at, updated_at
    FROM webhook_configs WHERE app_id IN (SELECT id FROM apps);
-- Keep AUTOINCREMENT's high-water mark: an id once used is never used again.
INSERT INTO sqlite_sequence (name, seq) SELECT 'webhook_configs_new', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'webhook_configs_new');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'webhook_configs'), 0))
    WHERE name = 'webhook_configs_new';
DROP TABLE webhook_configs;
ALTER TABLE webhook_configs_new RENAME TO webhook_configs;

CREATE TABLE connections_new (
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    realm_id TEXT NOT NULL REFERENCES realms (id) ON DELETE CASCADE,
    after_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, realm_id)
);
INSERT INTO connections_new SELECT app_id, realm_id, after_seq, created_at FROM connections
    WHERE app_id IN (SELECT id FROM apps) AND realm_id IN (SELECT id FROM realms);
DROP TABLE connections;
ALTER TABLE connections_new RENAME TO connections;
CREATE INDEX connections_by_realm ON connections (realm_id);

CREATE TABLE oauth_tokens_new (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    realm_id TEXT NOT NULL REFERENCES realms (id) ON DELETE CASCADE,
    redirect_uri TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO oauth_tokens_new SELECT token_hash, kind, app_id, realm_id, redirect_uri, expires_at, created_at
    FROM oauth_tokens WHERE app_id IN (SELECT id FROM apps) AND realm_id IN (SELECT id FROM realms);
DROP TABLE oauth_tokens;
ALTER TABLE oauth_tokens_new RENAME TO oauth_tokens;
CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (app_id, realm_id);

CREATE TABLE idempotency_keys_new (
    realm_id TEXT NOT NULL REFERENCES realms (id) ON DELETE CASCADE,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (realm_id, idem_key)
);
INSERT INTO idempotency_keys_new SELECT realm_id, idem_key, request_hash, response, created_at
    FROM idempotency_keys WHERE realm_id IN (SELECT id FROM realms);
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys;

CREATE TABLE windows_new (
    config_id BIGINT NOT NULL REFERENCES webhook_configs (id) ON DELETE CASCADE,
    realm_id TEXT NOT NULL REFERENCES realms (id) ON DELETE CASCADE,
    opened_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    event_count BIGINT NOT NULL,
    PRIMARY KEY (config_id, realm_id)
);
INSERT INTO windows_new SELECT config_id, realm_id, opened_at, due_at, event_count FROM windows
    WHERE config_id IN (SELECT id FROM webhook_configs) AND realm_id IN (SELECT id FROM realms);
DROP TABLE windows;
ALTER TABLE windows_new RENAME TO windows;
CREATE INDEX windows_by_due ON windows (due_at);

CREATE TABLE stream_leases_new (
    config_id BIGINT NOT NULL REFERENCES webhook_configs (id) ON DELETE CASCADE,
    realm_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (config_id, realm_id)
);
INSERT INTO stream_leases_new SELECT config_id, realm_id, owner, lease_until FROM stream_leases
    WHERE config_id IN (SELECT id FROM webhook_configs);
DROP TABLE stream_leases;
ALTER TABLE stream_leases_new RENAME TO stream_leases;
CREATE INDEX stream_leases_by_end ON stream_leases (lease_until);

CREATE TABLE attempts_new (
    notification_seq BIGINT NOT NULL REFERENCES notifications (seq) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status_code BIGINT,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (notification_seq, number)
);
INSERT INTO attempts_new SELECT notification_seq, number, started_at, duration_ms, outcome, status_code, error,
    response_body FROM attempts WHERE notification_seq IN (SELECT seq FROM notifications);
DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;

-- Deleting a realm or configuration looks its children up by these.
CREATE INDEX windows_by_realm ON windows (realm_id);
CREATE INDEX window_events_by_realm ON window_events (realm_id);
CREATE INDEX idempotency_keys_by_realm ON idempotency_keys (realm_id);
