-- 0005_host_alerts_health: the collector's host events join the alerts, and hosts keep
-- what their agents say about their watchers' health.
--
-- Written to run again without harm (IF NOT EXISTS, OR REPLACE, guarded UPDATEs).

-- host_events.rule_name and .detail: the rule and the exact event_detail text (JSON) of
-- the event's alert, written by the collector (storage.HostEvent.Rule and .Detail), so
-- that the alert reads the same from the store as from the live stream. Rows written
-- before this migration get them here.
ALTER TABLE host_events ADD COLUMN IF NOT EXISTS rule_name VARCHAR DEFAULT '';
ALTER TABLE host_events ADD COLUMN IF NOT EXISTS detail VARCHAR DEFAULT '';
UPDATE host_events SET rule_name = CASE kind
        WHEN 'INTEGRITY' THEN 'chain-integrity'
        WHEN 'CERT_EXPIRY' THEN 'certificate-expiry'
        ELSE 'dead-man' END
    WHERE COALESCE(rule_name, '') = '';
UPDATE host_events SET detail = json_object('kind', kind, 'message', message)::VARCHAR
    WHERE COALESCE(detail, '') = '';

-- hosts.degraded: which watchers run below their best mode, as the agent last said
-- ('' when none). The status shown is OFFLINE (status), else DEGRADED (degraded <> ''),
-- else ONLINE.
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS degraded VARCHAR DEFAULT '';

-- alert_rows: every alert, as one relation: the event entries, and the host events (no
-- chain entry behind them: seq NULL, tripwire_type 'HOST', alert_id the event's id, the
-- time as TIMESTAMP_NS in UTC like entries.ts). payload is the entry's payload; detail
-- is a host event's event_detail text; received_at is when the collector
-- stored the entry or raised the event.
CREATE OR REPLACE VIEW alert_rows AS
SELECT alert_id, host_id, seq, ts, tripwire_type, rule_name, severity, payload,
       NULL::VARCHAR AS detail, received_at
FROM entries WHERE kind = 'event'
UNION ALL
SELECT TRY_CAST(event_id AS UUID), host_id, NULL::UBIGINT, timezone('UTC', ts)::TIMESTAMP_NS,
       'HOST', rule_name, severity, NULL::VARCHAR, detail, ts
FROM host_events;

-- alerts: as in 0002, with the host events.
CREATE OR REPLACE VIEW alerts AS
SELECT
    e.alert_id,
    e.host_id,
    h.hostname,
    e.seq,
    e.ts,
    e.tripwire_type,
    e.rule_name,
    e.severity,
    COALESCE(e.detail::JSON, json_extract(e.payload, '$.event')) AS event_detail,
    e.received_at,
    COALESCE(t.status, 'open') AS triage_status,
    t.status_by AS triage_by,
    t.status_at AS triage_at,
    t.note AS triage_note
FROM alert_rows AS e
LEFT JOIN hosts AS h USING (host_id)
LEFT JOIN triage AS t USING (alert_id);
