-- The delivery queue in due order, without the rows that are not queued: the claim
-- query walks it from the front instead of sorting every pending row.
CREATE INDEX notifications_due ON notifications (next_attempt_at, seq) WHERE status IN ('pending', 'retrying') AND test = 0;
