-- Foreign keys with ON DELETE CASCADE: deleting an app, realm or configuration removes
-- what depends on it in the database itself. Notifications keep no key to their
-- configuration or realm: undelivered ones become `dropped` (one explicit statement of
-- each delete) and stay readable as history until retention removes them.
-- The tables written once per ingested event — change_events, entity_states and
-- window_events — have no keys: on PostgreSQL each key check is a trigger per row, and
-- with them ingestion of 100-event requests fell from 27,490 and 26,513 to 19,865 and
-- 23,619 events/s (docs/benchmarks.md). Deleting a realm, app or configuration removes
-- their rows in explicit statements instead.
-- Rows left without a parent by earlier versions are removed first.
DELETE FROM app_secrets WHERE app_id NOT IN (SELECT id FROM apps);
DELETE FROM webhook_configs WHERE app_id NOT IN (SELECT id FROM apps);
DELETE FROM connections WHERE app_id NOT IN (SELECT id FROM apps) OR realm_id NOT IN (SELECT id FROM realms);
DELETE FROM oauth_tokens WHERE app_id NOT IN (SELECT id FROM apps) OR realm_id NOT IN (SELECT id FROM realms);
DELETE FROM idempotency_keys WHERE realm_id NOT IN (SELECT id FROM realms);
DELETE FROM windows WHERE config_id NOT IN (SELECT id FROM webhook_configs) OR realm_id NOT IN (SELECT id FROM realms);
DELETE FROM stream_leases WHERE config_id NOT IN (SELECT id FROM webhook_configs);
DELETE FROM attempts WHERE notification_seq NOT IN (SELECT seq FROM notifications);
ALTER TABLE app_secrets ADD FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE;
ALTER TABLE webhook_configs ADD FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE;
ALTER TABLE connections ADD FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE;
ALTER TABLE connections ADD FOREIGN KEY (realm_id) REFERENCES realms (id) ON DELETE CASCADE;
ALTER TABLE oauth_tokens ADD FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE;
ALTER TABLE oauth_tokens ADD FOREIGN KEY (realm_id) REFERENCES realms (id) ON DELETE CASCADE;
ALTER TABLE idempotency_keys ADD FOREIGN KEY (realm_id) REFERENCES realms (id) ON DELETE CASCADE;
ALTER TABLE windows ADD FOREIGN KEY (config_id) REFERENCES webhook_configs (id) ON DELETE CASCADE;
ALTER TABLE windows ADD FOREIGN KEY (realm_id) REFERENCES realms (id) ON DELETE CASCADE;
ALTER TABLE stream_leases ADD FOREIGN KEY (config_id) REFERENCES webhook_configs (id) ON DELETE CASCADE;
ALTER TABLE attempts ADD FOREIGN KEY (notification_seq) REFERENCES notifications (seq) ON DELETE CASCADE;
-- Deleting a realm or configuration looks its children up by these.
CREATE INDEX windows_by_realm ON windows (realm_id);
CREATE INDEX window_events_by_realm ON window_events (realm_id);
CREATE INDEX idempotency_keys_by_realm ON idempotency_keys (realm_id);
