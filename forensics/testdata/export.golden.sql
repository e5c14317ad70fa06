-- Tripwire forensic export, format 2 (docs/formats/forensics-export.md).
-- Load: duckdb case.db < export.sql; then SELECT * FROM chain_breaks; (no rows: every hash and link verifies)
-- Rows with in_filter = false are stubs: entries outside the export's filter, kept without payload so
-- that links and seqs still verify. Payloads are byte-exact; see payload_bytes for non-UTF-8 ones.
SET TimeZone = 'UTC';
BEGIN TRANSACTION;
CREATE TABLE IF NOT EXISTS export_meta (
    key   VARCHAR NOT NULL,
    value VARCHAR
);
CREATE TABLE IF NOT EXISTS hosts (
    host_id   VARCHAR NOT NULL,
    hostname  VARCHAR NOT NULL,
    head_seq  UBIGINT,
    head_hash VARCHAR,
    fork_of   VARCHAR,
    fork_seq  UBIGINT
);
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS fork_of VARCHAR;
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS fork_seq UBIGINT;
CREATE TABLE IF NOT EXISTS entries (
    host_id       VARCHAR NOT NULL,
    pos           UBIGINT NOT NULL,
    seq           UBIGINT NOT NULL,
    ts            TIMESTAMP_NS,
    kind          VARCHAR,
    tripwire_type VARCHAR,
    rule_name     VARCHAR,
    severity      VARCHAR,
    prev_hash     VARCHAR NOT NULL,
    hash          VARCHAR NOT NULL,
    payload       VARCHAR,
    payload_bytes BLOB,
    in_filter     BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS export_hosts (
    host_id   VARCHAR NOT NULL,
    entries   UBIGINT NOT NULL,
    in_filter UBIGINT NOT NULL,
    last_seq  UBIGINT,
    last_hash VARCHAR
);
CREATE OR REPLACE VIEW chain_checks AS
WITH numbered AS (
    SELECT *,
        lag(hash) OVER by_pos AS pos_prev_hash,
        lag(seq)  OVER by_pos AS pos_prev_seq,
        lag(seq)  OVER by_seq AS seq_prev_seq,
        payload IS NOT NULL OR payload_bytes IS NOT NULL AS has_payload
    FROM entries
    WINDOW by_pos AS (PARTITION BY host_id ORDER BY pos),
           by_seq AS (PARTITION BY host_id ORDER BY seq, pos)
)
SELECT host_id, pos, seq, in_filter, has_payload, prev_hash, hash,
    coalesce(sha256(prev_hash || payload), sha256(encode(prev_hash) || payload_bytes)) AS recomputed_hash,
    -- The seq a BLOB payload states is read from its hex form: decode(payload_bytes,
    -- 'replace') would be simpler, but DuckDB 1.5 then rewrites the invalid bytes of the
    -- BLOB in place and sha256 sees the altered bytes (found by the hostile-content test).
    TRY_CAST(nullif(coalesce(
        regexp_extract(payload, '^\{"seq":([0-9]{1,20})[,}]', 1),
        decode(unhex(regexp_extract(hex(payload_bytes), '^7B22736571223A((3[0-9]){1,20})(2C|7D)', 1)))
    ), '') AS UBIGINT) AS payload_seq,
    pos_prev_hash, pos_prev_seq, seq_prev_seq
FROM numbered;

CREATE OR REPLACE VIEW chain_breaks AS
WITH c AS MATERIALIZED (SELECT * FROM chain_checks),
b AS (
    SELECT host_id, seq, pos, 1 AS ord, 'gap' AS "check",
        'missing seq ' || (coalesce(seq_prev_seq, 0) + 1) ||
            CASE WHEN seq - 1 > coalesce(seq_prev_seq, 0) + 1 THEN '..' || (seq - 1) ELSE '' END AS detail
    FROM c WHERE seq > coalesce(seq_prev_seq, 0) + 1
    UNION ALL
    SELECT host_id, seq, pos, 2, 'repeat', 'seq ' || seq || ' appears more than once'
    FROM c WHERE seq = seq_prev_seq
    UNION ALL
    SELECT host_id, seq, pos, 3, 'order', 'seq ' || seq || ' follows seq ' || pos_prev_seq || ' in chain order'
    FROM c
    WHERE seq <= pos_prev_seq OR (seq_prev_seq = seq - 1 AND pos_prev_seq IS DISTINCT FROM seq - 1)
    UNION ALL
    SELECT host_id, seq, pos, 4, 'link', CASE WHEN pos_prev_hash IS NULL
            THEN 'prev_hash of seq 1 is not the genesis hash (64 zeros)'
            ELSE 'prev_hash does not equal the hash of the entry before it (seq ' || pos_prev_seq || ')' END
    FROM c
    WHERE prev_hash <> pos_prev_hash OR (pos_prev_hash IS NULL AND seq = 1 AND prev_hash <> repeat('0', 64))
    UNION ALL
    SELECT host_id, seq, pos, 5, 'hash', 'hash does not recompute: sha256(prev_hash || payload) = ' || recomputed_hash
    FROM c WHERE recomputed_hash <> hash
    UNION ALL
    SELECT host_id, seq, pos, 6, 'payload_seq', 'the payload states seq ' || coalesce(CAST(payload_seq AS VARCHAR), 'none')
    FROM c WHERE has_payload AND payload_seq IS DISTINCT FROM seq
    UNION ALL
    SELECT t.host_id, t.claimed, NULL, 7, 'tail',
        'missing seq ' || (coalesce(t.max_seq, 0) + 1) || '..' || t.claimed || ' at the end: ' || t.who || ' states the chain reaches seq ' || t.claimed
    FROM (
        SELECT x.host_id, x.claimed, x.who, (SELECT max(seq) FROM entries e WHERE e.host_id = x.host_id) AS max_seq
        FROM (SELECT host_id, last_seq AS claimed, 'the exporter' AS who FROM export_hosts
              UNION ALL
              SELECT host_id, head_seq, 'the collector''s stored head' FROM hosts WHERE head_seq > 0) AS x
    ) AS t
    WHERE t.claimed > coalesce(t.max_seq, 0)
    UNION ALL
    SELECT x.host_id, x.claimed, e.pos, 8, 'head',
        x.who || ' states hash ' || x.claimed_hash || ' for seq ' || x.claimed || ', the entry has ' || e.hash
    FROM (SELECT host_id, last_seq AS claimed, last_hash AS claimed_hash, 'the exporter' AS who FROM export_hosts
          UNION ALL
          SELECT host_id, head_seq, head_hash, 'the collector''s stored head' FROM hosts WHERE head_seq > 0) AS x
    JOIN entries AS e ON e.host_id = x.host_id AND e.seq = x.claimed
    WHERE e.hash <> x.claimed_hash
)
SELECT host_id, seq, pos, "check", detail FROM b ORDER BY host_id, pos NULLS LAST, seq, ord;

CREATE OR REPLACE VIEW chain_summary AS
SELECT c.host_id,
    count(*) AS entries,
    count(*) FILTER (WHERE c.has_payload) AS with_payload,
    count(*) FILTER (WHERE NOT c.has_payload) AS stubs,
    count(*) FILTER (WHERE c.recomputed_hash = c.hash) AS hashes_ok,
    min(c.seq) AS first_seq, max(c.seq) AS last_seq,
    (SELECT count(*) FROM chain_breaks b WHERE b.host_id = c.host_id) AS breaks
FROM chain_checks AS c GROUP BY c.host_id ORDER BY c.host_id;

CREATE OR REPLACE VIEW events AS
SELECT e.host_id, coalesce(h.hostname, e.host_id) AS hostname, e.seq,
    TRY_CAST(e.payload->>'$.ts' AS TIMESTAMP_NS) AS ts,
    e.payload->>'$.event.type'     AS tripwire_type,
    e.payload->>'$.event.rule'     AS rule_name,
    e.payload->>'$.event.severity' AS severity,
    e.payload->>'$.event.source'   AS source,
    e.payload->>'$.event.path'     AS path,
    e.payload->>'$.event.op'       AS op,
    TRY_CAST(e.payload->>'$.event.count' AS UBIGINT) AS count,
    TRY_CAST(e.payload->>'$.event.pid'   AS INTEGER)  AS pid,
    TRY_CAST(e.payload->>'$.event.ppid'  AS INTEGER)  AS ppid,
    TRY_CAST(e.payload->>'$.event.uid'   AS BIGINT)   AS uid,
    TRY_CAST(e.payload->>'$.event.gid'   AS BIGINT)   AS gid,
    e.payload->>'$.event.user'       AS "user",
    e.payload->>'$.event.exe'        AS exe,
    e.payload->>'$.event.cmdline'    AS cmdline,
    coalesce(TRY_CAST(e.payload->>'$.event.cmdline_truncated' AS BOOLEAN), false) AS cmdline_truncated,
    e.payload->>'$.event.comm'       AS comm,
    e.payload->>'$.event.parent_exe' AS parent_exe,
    e.payload->>'$.event.cwd'        AS cwd,
    e.payload->>'$.event.cgroup'     AS cgroup,
    e.payload->>'$.event.exe_sha256' AS exe_sha256,
    e.payload->>'$.event.protocol'   AS protocol,
    e.payload->>'$.event.direction'  AS direction,
    e.payload->>'$.event.mode'       AS mode,
    e.payload->>'$.event.src_ip'     AS src_ip,
    TRY_CAST(e.payload->>'$.event.src_port' AS USMALLINT) AS src_port,
    e.payload->>'$.event.dst_ip'     AS dst_ip,
    TRY_CAST(e.payload->>'$.event.dst_port' AS USMALLINT) AS dst_port,
    e.payload->>'$.event.first_bytes' AS first_bytes,
    e.payload,
    h.fork_of
FROM entries AS e
LEFT JOIN hosts AS h USING (host_id)
WHERE e.payload IS NOT NULL AND json_valid(e.payload) AND json_extract_string(e.payload, '$.kind') = 'event';
INSERT INTO export_meta VALUES
('format_version', '2'),
('tool_version', 'test'),
('created_at', '2026-11-25T06:00:00Z'),
('source', 'dir:DIR'),
('filter_host', NULL),
('filter_from', NULL),
('filter_to', NULL),
('filter_type', NULL),
('filter_rule', 'aws-credentials-read');
INSERT INTO hosts VALUES
('web-01', 'web-01', 0, NULL, NULL, NULL);
INSERT INTO entries VALUES
('web-01', 1, 1, TRY_CAST('2026-11-25 06:00:00' AS TIMESTAMP_NS), 'event', 'FILE', 'aws-credentials-read', 'CRITICAL', '0000000000000000000000000000000000000000000000000000000000000000', 'e9830cb31ab3ddb16484b8814967150f4fb202337d976eeba6e7a24c4151d0c4', '{"seq":1,"ts":"2026-11-25T06:00:00Z","kind":"event","event":{"type":"FILE","rule":"aws-credentials-read","severity":"CRITICAL","source":"fanotify","path":"/home/deploy/.aws/credentials","op":"read","count":1,"pid":4000,"ppid":1234,"uid":1000,"user":"deploy","exe":"/usr/bin/python3.11","cmdline":"python3 /opt/app/sync.py --profile prod --bucket backups-0"}}', NULL, true),
('web-01', 2, 2, TRY_CAST('2026-11-25 06:00:00' AS TIMESTAMP_NS), 'anchor', NULL, NULL, NULL, 'e9830cb31ab3ddb16484b8814967150f4fb202337d976eeba6e7a24c4151d0c4', '7827f6053d4ac0114b90fc05fc752e25218758d5ff3ebd506bd4f63665415617', '{"seq":2,"ts":"2026-11-25T06:00:00Z","kind":"anchor","anchor":{"prev_segment":"seg-00000000000000000001.log","prev_seq":1,"prev_hash":"e9830cb31ab3ddb16484b8814967150f4fb202337d976eeba6e7a24c4151d0c4"}}', NULL, true),
('web-01', 3, 3, TRY_CAST('2026-11-25 06:00:00.001' AS TIMESTAMP_NS), 'event', 'FILE', 'aws-credentials-read', 'CRITICAL', '7827f6053d4ac0114b90fc05fc752e25218758d5ff3ebd506bd4f63665415617', '8bdeeee08b9d447a6f260e9d24d88f53762a30abf58dd2d3230016caec903023', '{"seq":3,"ts":"2026-11-25T06:00:00.001Z","kind":"event","event":{"type":"FILE","rule":"aws-credentials-read","severity":"CRITICAL","source":"fanotify","path":"/home/deploy/.aws/credentials","op":"read","count":1,"pid":4001,"ppid":1234,"uid":1000,"user":"deploy","exe":"/usr/bin/python3.11","cmdline":"sh -c ''echo \"hi\"; cat /etc/shadow'' \\ \u001b[0m\n"}}', NULL, true),
('web-01', 4, 4, TRY_CAST('2026-11-25 06:00:00' AS TIMESTAMP_NS), 'anchor', NULL, NULL, NULL, '8bdeeee08b9d447a6f260e9d24d88f53762a30abf58dd2d3230016caec903023', '51e33ef3342accf6401a858221c9765fe11717498e1ca67df82df3cb3f1c9033', '{"seq":4,"ts":"2026-11-25T06:00:00Z","kind":"anchor","anchor":{"prev_segment":"seg-00000000000000000002.log","prev_seq":3,"prev_hash":"8bdeeee08b9d447a6f260e9d24d88f53762a30abf58dd2d3230016caec903023"}}', NULL, true),
('web-01', 5, 5, NULL, NULL, NULL, NULL, NULL, '51e33ef3342accf6401a858221c9765fe11717498e1ca67df82df3cb3f1c9033', '57837692b295eb83016b6261bf241d050878b3306d2b0a0e5bbff1db0039b082', NULL, NULL, false);
INSERT INTO export_hosts VALUES
('web-01', 5, 4, 5, '57837692b295eb83016b6261bf241d050878b3306d2b0a0e5bbff1db0039b082');
COMMIT;
