-- The claim loop sleeps until the soonest lease end: found at the start of this index
-- instead of by a scan of a table whose rows come and go with every attempt.
CREATE INDEX stream_leases_by_end ON stream_leases (lease_until);
