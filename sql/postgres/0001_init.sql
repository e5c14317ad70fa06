-- 0001_init: hosts, chain heads and the authoritative index of entries and alerts.
--
-- PostgreSQL decides what is held: an entry is stored when its row is in chain_entries,
-- whatever ClickHouse holds (see docs/adr/0007-clickhouse-postgres-store.md). ClickHouse
-- keeps the payloads; reads select and page here, then fetch the text from ClickHouse.
--
-- Event times are ts_ns: signed nanoseconds since the epoch, UTC, exact as the chain
-- payload has them (a timestamptz keeps microseconds only). For reading by hand:
-- to_timestamp(ts_ns / 1e9) is the time to the microsecond. Collector times
-- (first_seen, last_seen, received_at, updated_at, status_at) are timestamptz.

-- hosts: every host that registered, with its last reported session.
CREATE TABLE hosts (
    host_id          text        PRIMARY KEY,
    hostname         text        NOT NULL,
    os               text        NOT NULL,
    arch             text        NOT NULL,
    kernel           text        NOT NULL,
    agent_version    text        NOT NULL,
    protocol_version bigint      NOT NULL,
    watchers         text        NOT NULL, -- JSON array of watcher statuses, as reported
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL
);
CREATE INDEX hosts_hostname ON hosts (hostname);

-- chain_heads: per host, the highest seq held contiguously from 1 and its hash, and the
-- highest seq held at all (max_seq > head_seq: entries arrived past a hole).
CREATE TABLE chain_heads (
    host_id    text        PRIMARY KEY,
    head_seq   bigint      NOT NULL CHECK (head_seq >= 0),
    head_hash  text        NOT NULL,
    max_seq    bigint      NOT NULL CHECK (max_seq >= head_seq),
    updated_at timestamptz NOT NULL
);

-- chain_entries: one row per entry held, once per (host_id, seq). hash is the hash of
-- the held entry: of the rows ClickHouse may have for (host_id, seq), the one with this
-- hash is the entry.
CREATE TABLE chain_entries (
    host_id     text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq > 0),
    ts_ns       bigint      NOT NULL,
    kind        text        NOT NULL,
    hash        text        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (host_id, seq)
);
CREATE INDEX chain_entries_ts ON chain_entries (ts_ns);

-- alerts: the alert index, one row per event entry, with its triage state.
CREATE TABLE alerts (
    alert_id      uuid        PRIMARY KEY, -- storage.AlertID: UUIDv5 of "<host_id>/<seq>"
    host_id       text        NOT NULL,
    seq           bigint      NOT NULL,
    ts_ns         bigint      NOT NULL,
    received_at   timestamptz NOT NULL,
    tripwire_type text,
    rule_name     text,
    severity      text,
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    status_by     text,
    status_at     timestamptz,
    UNIQUE (host_id, seq),
    FOREIGN KEY (host_id, seq) REFERENCES chain_entries (host_id, seq)
);
CREATE INDEX alerts_newest ON alerts (ts_ns DESC, seq DESC, host_id DESC);
CREATE INDEX alerts_host_newest ON alerts (host_id, ts_ns DESC);
