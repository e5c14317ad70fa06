-- timeline.sql: one host's timeline, every entry with a payload in time order: events
-- (FILE, NETWORK, PROCESS) and the chain's own life (agent start and stop, gaps where
-- events were lost, truncated torn tails), so that a blind period shows as one.
--
-- Parameters (DuckDB variables; in the duckdb shell run these first, with
-- `tripwire-forensics sql` pass --set host=web-01 and so on):
--   SET VARIABLE host = 'web-01';                         -- host id or host name (required)
--   SET VARIABLE from_ts = '2026-11-25 06:00:00';         -- optional, UTC, inclusive
--   SET VARIABLE to_ts = '2026-11-25 07:00:00';           -- optional, UTC, exclusive
--
-- Columns: ts (UTC, ns), seq, kind, tripwire_type, rule_name, severity, what (the path,
-- the connection, the executable or the notice), op, pid, ppid, user, cmdline.
-- Check chain_breaks first: this reads payloads as exported.
WITH t AS (
    SELECT e.host_id, coalesce(h.hostname, e.host_id) AS hostname, e.seq,
        TRY_CAST(json_extract_string(e.payload, '$.ts') AS TIMESTAMP_NS) AS ts,
        json_extract_string(e.payload, '$.kind') AS kind,
        json_extract_string(e.payload, '$.notice.what') AS notice
    FROM entries AS e
    LEFT JOIN hosts AS h USING (host_id)
    WHERE e.payload IS NOT NULL AND json_valid(e.payload)
)
SELECT t.ts, t.seq, t.kind, v.tripwire_type, v.rule_name, v.severity,
    coalesce(v.path,
             v.src_ip || ':' || v.src_port || ' -> ' || coalesce(v.dst_ip || ':', ':') || v.dst_port,
             v.exe, t.notice) AS what,
    v.op, v.pid, v.ppid, v."user", v.cmdline
FROM t
LEFT JOIN events AS v ON v.host_id = t.host_id AND v.seq = t.seq
WHERE getvariable('host') IN (t.host_id, t.hostname)
  AND (getvariable('from_ts') IS NULL OR t.ts >= CAST(getvariable('from_ts') AS TIMESTAMP_NS))
  AND (getvariable('to_ts') IS NULL OR t.ts < CAST(getvariable('to_ts') AS TIMESTAMP_NS))
ORDER BY t.ts, t.seq;
