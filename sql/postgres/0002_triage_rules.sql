-- 0002_triage_rules: the note of an alert's triage, and the rules kept centrally.
--
-- Written to run again without harm (IF NOT EXISTS), like every migration.

-- alerts.status_note: the note an analyst gave with the last triage change.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS status_note text;
CREATE INDEX IF NOT EXISTS alerts_triaged ON alerts (status, ts_ns) WHERE status <> 'open';

-- rules: the rules applied centrally (tripwire-collector rules apply). host '' is every
-- host; a name is unique per host. body is the rule in the agent's syntax, as JSON text
-- kept as written (jsonb would reorder it).
CREATE TABLE IF NOT EXISTS rules (
    host       text        NOT NULL,
    name       text        NOT NULL,
    type       text        NOT NULL,
    severity   text        NOT NULL,
    body       text        NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (host, name)
);
