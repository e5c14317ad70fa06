-- cmdline_sightings.sql: first and last sighting, fleet-wide, of each command line
-- matching a pattern, from every event that carries one (exec events and the acting
-- process of file and network events): where it started, how far it spread.
--
-- Parameters:
--   SET VARIABLE cmdline = '%nc -e%';   -- required: a LIKE pattern ('%' any text)
--
-- Columns: cmdline, first_ts, first_host, first_seq, last_ts, last_host, last_seq,
-- hosts (how many), host_names, sightings (events).
SELECT cmdline,
    min(ts) AS first_ts,
    arg_min(hostname, (ts, host_id, seq)) AS first_host,
    arg_min(seq, (ts, host_id, seq)) AS first_seq,
    max(ts) AS last_ts,
    arg_max(hostname, (ts, host_id, seq)) AS last_host,
    arg_max(seq, (ts, host_id, seq)) AS last_seq,
    count(DISTINCT host_id) AS hosts,
    string_agg(DISTINCT hostname, ',' ORDER BY hostname) AS host_names,
    count(*) AS sightings
FROM events
WHERE cmdline LIKE getvariable('cmdline') AND ts IS NOT NULL
GROUP BY cmdline
ORDER BY first_ts, cmdline;
