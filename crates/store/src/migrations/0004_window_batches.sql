-- The ingestion request an event came with (a random id per request), so that a 0s
-- window makes exactly one notification per request even when requests share a commit
-- or arrive faster than windows are closed.
ALTER TABLE change_events ADD COLUMN batch_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE window_events ADD COLUMN batch_id BIGINT NOT NULL DEFAULT 0;
