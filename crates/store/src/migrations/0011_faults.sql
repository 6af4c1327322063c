-- Fault injection on sandbox configurations: the settings (`Faults::to_storage`) and how
-- many notifications the configuration has made since (the input of each decision).
ALTER TABLE webhook_configs ADD COLUMN faults TEXT;
ALTER TABLE webhook_configs ADD COLUMN fault_counter BIGINT NOT NULL DEFAULT 0;
-- On each notification: what was injected (`drop`, `duplicate,delay`, …); until when a
-- delayed one is held back (while held it does not hold back its stream); when its
-- duplicate was taken for sending.
ALTER TABLE notifications ADD COLUMN faults TEXT;
ALTER TABLE notifications ADD COLUMN delayed_until BIGINT;
ALTER TABLE notifications ADD COLUMN duplicated_at BIGINT;
CREATE INDEX notifications_faulted ON notifications (seq) WHERE faults IS NOT NULL;
