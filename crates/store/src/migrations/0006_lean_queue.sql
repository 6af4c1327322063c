-- Fan-out matches events against each configuration's entity selection in the server,
-- so the per-(entity, operation) subscription rows are no longer read.
DROP TABLE config_subscriptions;
-- A stream's lease (stream_leases) is the only lock an attempt needs: the per-
-- notification lease columns were written on every claim and never decided anything.
DROP INDEX notifications_by_lease_owner;
ALTER TABLE notifications DROP COLUMN lease_owner;
ALTER TABLE notifications DROP COLUMN lease_until;
