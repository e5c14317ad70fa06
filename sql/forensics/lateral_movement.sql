-- lateral_movement.sql: every connection from one source IP across all hosts, in time
-- order (decoy ports touched and monitored services), with how many hosts it reached
-- and when it first reached each: one attacker walking the fleet shows as one IP on
-- several hosts within minutes.
--
-- Parameters:
--   SET VARIABLE src_ip = '10.0.0.66';   -- required
--
-- Columns: ts, hostname, seq, src_ip, src_port, dst_ip, dst_port, protocol, direction,
-- mode, rule_name, severity, first_bytes, host_rank (1 for the first host it reached, ...),
-- hosts_reached.
WITH conns AS (
    SELECT * FROM events
    WHERE tripwire_type = 'NETWORK' AND src_ip = getvariable('src_ip')
),
firsts AS (
    SELECT host_id, min(ts) AS first_ts FROM conns GROUP BY host_id
)
SELECT c.ts, c.hostname, c.seq, c.src_ip, c.src_port, c.dst_ip, c.dst_port, c.protocol, c.direction,
    c.mode, c.rule_name, c.severity, c.first_bytes,
    dense_rank() OVER (ORDER BY f.first_ts, c.host_id) AS host_rank,
    (SELECT count(*) FROM firsts) AS hosts_reached
FROM conns AS c JOIN firsts AS f USING (host_id)
ORDER BY c.ts, c.hostname, c.seq;
