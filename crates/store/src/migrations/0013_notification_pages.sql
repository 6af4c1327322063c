-- Pages of the notification list, read newest first in index order and stopped at the
-- limit however large the history (`Store::notifications`): by app, by app and status,
-- by app and realm, each ending in `seq` and carrying `created_at`, so that a time range
-- is tested inside the index without reading the rows it skips.
DROP INDEX notifications_by_app;
CREATE INDEX notifications_by_app ON notifications (app_id, seq, created_at);
CREATE INDEX notifications_by_app_status ON notifications (app_id, status, seq, created_at);
CREATE INDEX notifications_by_app_realm ON notifications (app_id, realm_id, seq, created_at);
-- The queue is read through notifications_due (0005); the status index from 0001 only
-- cost an update on every status change.
DROP INDEX notifications_queue;
