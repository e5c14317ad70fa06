-- 0006_forks: a chain that does not extend the one stored for its host is kept as a fork
-- of the host (docs/adr/0014-forked-chains-kept-and-flagged.md). A fork is a row of hosts
-- of its own, under a derived id, with the host name of the host it departs from:
-- fork_of names the chain it departs from (a host id, or another fork's id) and fork_seq
-- the first seq at which the two differ. Both are NULL for a host's own chain. The fork's
-- entries are in chain_entries (and ClickHouse's entries) under the fork's id, complete
-- from seq 1, so that the fork verifies from genesis like any chain (the common prefix is
-- held twice).
--
-- IF NOT EXISTS: the file can run again without harm.
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS fork_of text;
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS fork_seq bigint CHECK (fork_seq > 0);
