-- 0002_triage_rules: analysts' triage of alerts, and the rules kept centrally.
--
-- Written to run again without harm (IF NOT EXISTS, OR REPLACE), like every migration.

-- triage: an alert's triage state, once an analyst changed it; an alert without a row
-- here is open. status_at is the collector's clock, TIMESTAMPTZ like received_at.
CREATE TABLE IF NOT EXISTS triage (
    alert_id  UUID        PRIMARY KEY,
    status    VARCHAR     NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    status_by VARCHAR     NOT NULL,
    status_at TIMESTAMPTZ NOT NULL,
    note      VARCHAR     NOT NULL
);

-- rules: the rules applied centrally (tripwire-collector rules apply). host '' is every
-- host; a name is unique per host. body is the rule in the agent's syntax, as JSON text.
CREATE TABLE IF NOT EXISTS rules (
    host       VARCHAR     NOT NULL,
    name       VARCHAR     NOT NULL,
    type       VARCHAR     NOT NULL,
    severity   VARCHAR     NOT NULL,
    body       VARCHAR     NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (host, name)
);

-- alerts: as in 0001, with each alert's triage state.
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
    json_extract(e.payload, '$.event') AS event_detail,
    e.received_at,
    COALESCE(t.status, 'open') AS triage_status,
    t.status_by AS triage_by,
    t.status_at AS triage_at,
    t.note AS triage_note
FROM entries AS e
LEFT JOIN hosts AS h USING (host_id)
LEFT JOIN triage AS t USING (alert_id)
WHERE e.kind = 'event';
