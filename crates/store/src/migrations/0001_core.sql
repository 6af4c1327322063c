-- The core schema. Written once for both backends: `{AUTOINC}` and `{BLOB}` are the only
-- words that differ and are replaced before the statements run. Every time is BIGINT
-- milliseconds since the Unix epoch, every flag BIGINT 0/1, so that both backends compare
-- and decode them alike.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE realms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    client_id TEXT NOT NULL UNIQUE,
    client_secret_hash TEXT NOT NULL,
    api_key_hash TEXT NOT NULL UNIQUE,
    redirect_uris TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Secrets the server must read back to sign (verifier_token, signing_secret), possibly
-- encrypted. During a rotation's grace period `previous` still signs.
CREATE TABLE app_secrets (
    app_id TEXT NOT NULL,
    name TEXT NOT NULL,
    current_value TEXT NOT NULL,
    previous_value TEXT,
    grace_until BIGINT,
    rotated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);

CREATE TABLE webhook_configs (
    id {AUTOINC},
    app_id TEXT NOT NULL,
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

-- An app authorised on a realm. `after_seq` is the last change-event sequence number at
-- connection time: only later events are delivered to the app.
CREATE TABLE connections (
    app_id TEXT NOT NULL,
    realm_id TEXT NOT NULL,
    after_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, realm_id)
);
CREATE INDEX connections_by_realm ON connections (realm_id);

-- OAuth access and refresh tokens and authorization codes, by hash only.
CREATE TABLE oauth_tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL,
    realm_id TEXT NOT NULL,
    redirect_uri TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (app_id, realm_id);

CREATE TABLE change_events (
    seq {AUTOINC},
    realm_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted_id TEXT,
    accepted_at BIGINT NOT NULL
);
CREATE INDEX change_events_by_realm_time ON change_events (realm_id, last_updated);
CREATE INDEX change_events_by_acceptance ON change_events (accepted_at);

-- The latest state of every entity, for CDC and the QuickBooks-compatible API.
CREATE TABLE entity_states (
    realm_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    sync_token BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    body TEXT,
    PRIMARY KEY (realm_id, entity, entity_id)
);
CREATE INDEX entity_states_by_time ON entity_states (realm_id, entity, last_updated);

CREATE TABLE idempotency_keys (
    realm_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (realm_id, idem_key)
);

-- Aggregation windows: events gathered per (configuration, realm), in the database so
-- that a restart or another node continues them.
CREATE TABLE windows (
    config_id BIGINT NOT NULL,
    realm_id TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    event_count BIGINT NOT NULL,
    PRIMARY KEY (config_id, realm_id)
);
CREATE INDEX windows_by_due ON windows (due_at);

CREATE TABLE window_events (
    config_id BIGINT NOT NULL,
    realm_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    PRIMARY KEY (config_id, realm_id, event_seq)
);

-- Notifications with their fixed bytes. The delivery queue is the set of rows in status
-- `pending` or `retrying`, ordered by (next_attempt_at, seq).
CREATE TABLE notifications (
    seq {AUTOINC},
    id TEXT NOT NULL UNIQUE,
    config_id BIGINT,
    app_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    realm_id TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    test BIGINT NOT NULL,
    payload {BLOB} NOT NULL,
    event_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT,
    attempt_count BIGINT NOT NULL,
    first_attempt_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX notifications_queue ON notifications (status, next_attempt_at, seq);
CREATE INDEX notifications_by_app ON notifications (app_id, seq);
CREATE INDEX notifications_by_stream ON notifications (config_id, realm_id, seq);
CREATE INDEX notifications_by_age ON notifications (created_at);

CREATE TABLE attempts (
    notification_seq BIGINT NOT NULL,
    number BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status_code BIGINT,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (notification_seq, number)
);
