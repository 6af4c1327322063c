-- Under strict ordering a stream whose oldest notification waits for a retry holds back
-- the rest: they are made due no earlier than that retry, so the queue index's due part
-- holds only what can be sent. Finding a stream's retry looks up this small index.
CREATE INDEX notifications_retrying ON notifications (config_id, realm_id) WHERE status = 'retrying';
