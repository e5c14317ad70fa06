-- 0009_alerts_lean_index: two fewer checks per alert written.
--
-- Every alert of a chain entry costs PostgreSQL, on top of its row: an entry in each of
-- the alerts table's indexes and a foreign-key check against chain_entries, which runs
-- as a trigger per row. Two of them guard nothing the write path does not already:
--   - UNIQUE (host_id, seq): the alert id is the UUIDv5 of "<host_id>/<seq>"
--     (storage.AlertID), so the primary key is already unique on (host_id, seq); no
--     query looks alerts up by (host_id, seq) (reads join chain_entries on its key).
--   - the foreign key to chain_entries: the only writer of chain alerts (storage/fleet
--     insertIndex) inserts the chain_entries rows first, in the same transaction, and
--     retention deletes both in one statement.
-- See docs/adr/0015-fleet-write-path.md. Written to run again without harm.
ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_host_id_seq_fkey;
ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_host_id_seq_key;
