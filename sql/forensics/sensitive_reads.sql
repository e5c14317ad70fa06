-- sensitive_reads.sql: every read of a sensitive file, fleet-wide, with the reading
-- process (pid, user, executable, command line, from the event) and its parent (the
-- latest exec event of its ppid on that host at or before the read, where one exists).
--
-- Parameters:
--   SET VARIABLE sensitive = '/etc/shadow,/etc/gshadow,%/.ssh/id_%';
--       optional: comma-separated LIKE patterns; the default is below.
--
-- Columns: ts, hostname, seq, path, op, pid, user, exe, cmdline, ppid, parent_exe,
-- parent_cmdline, rule_name, severity.
WITH patterns AS (
    SELECT unnest(string_split(coalesce(getvariable('sensitive'),
        '/etc/shadow,/etc/gshadow,/etc/sudoers,/etc/sudoers.d/%,/etc/ssh/ssh_host_%key,' ||
        '%/.ssh/id_%,%/.ssh/authorized_keys,%/.aws/credentials,%/.kube/config,%/.docker/config.json,' ||
        '/root/%,/var/lib/tripwire/%'), ',')) AS pattern
),
reads AS (
    SELECT * FROM events AS v
    WHERE v.tripwire_type = 'FILE' AND v.op IN ('read', 'open')
      AND EXISTS (SELECT 1 FROM patterns AS p WHERE v.path LIKE p.pattern)
),
execs AS (
    SELECT host_id, ts, pid, exe, cmdline FROM events
    WHERE tripwire_type = 'PROCESS' AND pid IS NOT NULL AND ts IS NOT NULL
)
SELECT r.ts, r.hostname, r.seq, r.path, r.op, r.pid, r."user", r.exe, r.cmdline, r.ppid,
    coalesce(r.parent_exe, p.exe) AS parent_exe, p.cmdline AS parent_cmdline, r.rule_name, r.severity
FROM reads AS r
ASOF LEFT JOIN execs AS p ON p.host_id = r.host_id AND p.pid = r.ppid AND r.ts >= p.ts
ORDER BY r.ts, r.hostname, r.seq;
