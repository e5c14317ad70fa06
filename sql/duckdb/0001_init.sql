-- 0001_init: the embedded store's tables.
--
-- Event times (entries.ts, alerts.ts) are TIMESTAMP_NS holding UTC: nanoseconds since the
-- epoch, shown as UTC wall-clock times. The chain payload, the hashed and authoritative
-- record, carries the event time to the nanosecond, and so do the live alert stream and
-- the API; a TIMESTAMPTZ keeps microseconds only, and stored alerts would then differ
-- from both. A BIGINT of nanoseconds would be as exact, but every query an analyst
-- writes would have to convert it; a TIMESTAMP_NS prints as a time, sorts, compares with
-- UTC literals (ts >= '2026-03-14 10:00:00.123456789') and takes date_trunc, strftime
-- ('%n' prints the nanoseconds) and interval arithmetic, those returning microsecond
-- TIMESTAMPs. It spans 1677-09-21 to 2262-04-11; the store refuses entries outside the
-- years 1678 to 2261. DuckDB refuses to compare it with a TIMESTAMPTZ such as now()
-- without a cast: write timezone('UTC', ts), a TIMESTAMPTZ to the microsecond, and not
-- ts::TIMESTAMPTZ, which reads ts in the session's time zone.
--
-- The other times (first_seen, last_seen, received_at, updated_at) come from the
-- collector's clock and are TIMESTAMPTZ (an instant, stored as UTC microseconds), e.g.
-- received_at - timezone('UTC', ts) is the ingest delay. The store sets the session time
-- zone to UTC, so that SQL over this file renders and truncates them in UTC whatever the
-- machine's zone; in the duckdb CLI, SET TimeZone = 'UTC' does the same.

-- hosts: every host that registered, with its last reported session.
CREATE TABLE hosts (
    host_id          VARCHAR     PRIMARY KEY,
    hostname         VARCHAR     NOT NULL,
    os               VARCHAR     NOT NULL,
    arch             VARCHAR     NOT NULL,
    kernel           VARCHAR     NOT NULL,
    agent_version    VARCHAR     NOT NULL,
    protocol_version UINTEGER    NOT NULL,
    watchers         VARCHAR     NOT NULL, -- JSON array of watcher statuses, as reported
    first_seen       TIMESTAMPTZ NOT NULL,
    last_seen        TIMESTAMPTZ NOT NULL
);

-- entries: every chain entry received, once per (host_id, seq). payload is the exact text
-- the agent hashed, so that hash = sha256(prev_hash || payload) recomputes in SQL.
-- alert_id is set on event entries only (a UUIDv5 of "<host_id>/<seq>", stable across
-- resends and backends).
CREATE TABLE entries (
    host_id       VARCHAR      NOT NULL,
    seq           UBIGINT      NOT NULL,
    ts            TIMESTAMP_NS NOT NULL, -- event time, UTC, to the nanosecond (see above)
    kind          VARCHAR      NOT NULL,
    tripwire_type VARCHAR,
    rule_name     VARCHAR,
    severity      VARCHAR,
    prev_hash     VARCHAR      NOT NULL,
    hash          VARCHAR      NOT NULL,
    payload       VARCHAR      NOT NULL,
    alert_id      UUID,
    received_at   TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (host_id, seq)
);

-- chain_heads: per host, the highest seq held contiguously from 1 (head_seq, head_hash)
-- and the highest seq held at all (max_seq). Kept by the same transaction that inserts
-- entries, so that reading a head never scans entries; max_seq > head_seq means entries
-- arrived past a hole.
CREATE TABLE chain_heads (
    host_id    VARCHAR     PRIMARY KEY,
    head_seq   UBIGINT     NOT NULL,
    head_hash  VARCHAR     NOT NULL,
    max_seq    UBIGINT     NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- alerts: the event entries, for the query API and for analysts writing SQL against the
-- file. event_detail is the payload's "event" object as re-serialised by DuckDB's json
-- extension (equal as JSON, not byte for byte: escapes such as \u003c come out decoded).
CREATE VIEW alerts AS
SELECT
    e.alert_id,
    e.host_id,
    h.hostname,
    e.seq,
    e.ts,
    e.tripwire_type,
    e.rule_name,
    e.severity,
    json_extract(e.payload, '$.event') AS event_detail,
    e.received_at
FROM entries AS e
LEFT JOIN hosts AS h USING (host_id)
WHERE e.kind = 'event';
