-- 0001_init: the history of chain entries.
--
-- ts is the event time as signed nanoseconds since the epoch, UTC (18.16 has no
-- DateTime64, and its DateTime is whole seconds from 1970): exact, and it spans the years
-- 1678 to 2261 that the store accepts. month is ts's UTC year*100+month (202603), set by
-- the writer, and is the partition: DateTime and Date cannot hold times before 1970, and
-- retention drops whole months (ALTER TABLE entries DROP PARTITION 202403).
--
-- De-duplication: PostgreSQL's chain_entries says which entry (host_id, seq) is held, by
-- its hash; the writer inserts here only entries PostgreSQL does not hold, before
-- recording them there. A row here whose (host_id, seq, hash) is not in chain_entries is
-- an orphan of a write that failed in PostgreSQL; an entry resent after such a failure is
-- inserted again. ReplacingMergeTree over (host_id, ts, seq) folds identical copies in
-- background merges; the store's reads take the row whose hash PostgreSQL holds, and SQL
-- written by hand should use FINAL, or LIMIT 1 BY host_id, seq, to see each copy once.
CREATE TABLE IF NOT EXISTS entries (
    host_id       String,
    seq           UInt64,
    ts            Int64,
    month         UInt32,
    kind          String,
    tripwire_type String,
    rule_name     String,
    severity      String,
    prev_hash     String,
    hash          String,
    payload       String,
    received_at   DateTime
) ENGINE = ReplacingMergeTree
PARTITION BY month
ORDER BY (host_id, ts, seq);
