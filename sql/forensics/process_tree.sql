-- process_tree.sql: the process tree behind an alert: the alert itself (depth 0), the
-- process that caused it (depth 1, its latest exec event with that pid at or before the
-- alert), and that process's ancestors from exec events (PROCESS tripwires) linked by
-- ppid, each parent being the latest exec of that pid on the same host at or before its
-- child's exec. The walk stops at the first parent no exec event recorded (that pid is
-- then shown as the last row's ppid) or after 64 levels.
--
-- Parameters:
--   SET VARIABLE host = 'web-01';   -- host id or host name of the alert
--   SET VARIABLE seq = 42;          -- the alert's seq (a number or its text)
--
-- Columns: depth, seq, ts, tripwire_type, rule_name, pid, ppid, user, exe, cmdline, path.
WITH RECURSIVE execs AS (
    SELECT host_id, seq, ts, pid, ppid FROM events
    WHERE tripwire_type = 'PROCESS' AND pid IS NOT NULL AND ts IS NOT NULL
),
linked AS (
    SELECT c.host_id, c.seq, c.ts, c.pid, c.ppid, p.seq AS parent_seq
    FROM execs AS c
    ASOF LEFT JOIN execs AS p ON p.host_id = c.host_id AND p.pid = c.ppid AND c.ts >= p.ts
),
alert AS (
    SELECT host_id, seq, ts, pid FROM events
    WHERE getvariable('host') IN (host_id, hostname) AND seq = CAST(getvariable('seq') AS UBIGINT)
),
-- The acting process's exec: the alert itself when the alert is an exec event.
actor AS (
    SELECT a.host_id, a.seq AS alert_seq, x.seq AS exec_seq, x.parent_seq
    FROM alert AS a
    ASOF LEFT JOIN linked AS x ON x.host_id = a.host_id AND x.pid = a.pid AND a.ts >= x.ts
),
roots AS (
    SELECT 0 AS depth, host_id, alert_seq AS seq,
        CASE WHEN exec_seq = alert_seq THEN parent_seq END AS parent_seq
    FROM actor
    UNION ALL
    SELECT 1, host_id, exec_seq, parent_seq FROM actor WHERE exec_seq <> alert_seq
),
walk AS (
    SELECT depth, host_id, seq, parent_seq FROM roots
    UNION ALL
    SELECT w.depth + 1, l.host_id, l.seq, l.parent_seq
    FROM walk AS w JOIN linked AS l ON l.host_id = w.host_id AND l.seq = w.parent_seq
    WHERE w.depth < 64
)
SELECT w.depth, v.seq, v.ts, v.tripwire_type, v.rule_name, v.pid, v.ppid, v."user", v.exe, v.cmdline, v.path
FROM walk AS w JOIN events AS v ON v.host_id = w.host_id AND v.seq = w.seq
ORDER BY w.depth;
