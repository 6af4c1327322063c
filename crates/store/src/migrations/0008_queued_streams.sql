-- A claimed notification is due again only when its lease would expire, and under strict
-- ordering a new notification is due no earlier than the queued ones before it in its
-- stream (in flight or waiting for a retry). Finding those looks up this index of queued
-- notifications by stream; it replaces the index of retrying ones.
DROP INDEX notifications_retrying;
CREATE INDEX notifications_queued_by_stream ON notifications (config_id, realm_id) WHERE status IN ('pending', 'retrying');
