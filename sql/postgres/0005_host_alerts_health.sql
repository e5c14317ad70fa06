-- 0005_host_alerts_health: the collector's host events join the alert index, and hosts
-- keep what their agents say about their watchers' health.
--
-- Written to run again without harm (IF NOT EXISTS, ON CONFLICT, guarded UPDATEs).

-- host_events.rule_name and .detail: the rule and the exact event_detail text (JSON) of
-- the event's alert, written by the collector (storage.HostEvent.Rule and .Detail), so
-- that the alert reads the same from the store as from the live stream. Rows written
-- before this migration get them here.
ALTER TABLE host_events ADD COLUMN IF NOT EXISTS rule_name text NOT NULL DEFAULT '';
ALTER TABLE host_events ADD COLUMN IF NOT EXISTS detail text NOT NULL DEFAULT '';
UPDATE host_events SET rule_name = CASE kind
        WHEN 'INTEGRITY' THEN 'chain-integrity'
        WHEN 'CERT_EXPIRY' THEN 'certificate-expiry'
        ELSE 'dead-man' END
    WHERE rule_name = '';
UPDATE host_events SET detail = json_build_object('kind', kind, 'message', message)::text
    WHERE detail = '';

-- alerts: a host event is an alert with no chain entry behind it, so seq is NULL (the
-- foreign key to chain_entries does not apply to it: MATCH SIMPLE skips NULLs), its
-- tripwire_type is 'HOST', and its alert_id is the event's id. Its detail is
-- host_events.detail.
ALTER TABLE alerts ALTER COLUMN seq DROP NOT NULL;
INSERT INTO alerts (alert_id, host_id, seq, ts_ns, received_at, tripwire_type, rule_name, severity)
SELECT event_id::uuid, host_id, NULL, (extract(epoch FROM ts) * 1000000)::bigint * 1000, ts,
       'HOST', rule_name, severity
FROM host_events
ON CONFLICT DO NOTHING;

-- hosts.degraded: which watchers run below their best mode, as the agent last said
-- ('' when none). The status shown is OFFLINE (status), else DEGRADED (degraded <> ''),
-- else ONLINE.
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS degraded text NOT NULL DEFAULT '';
