-- The dead-man switch: each host's status, and the host events the collector raises
-- itself (a host gone silent, a host back). Any replica may mark a host; the update is
-- conditional, so exactly one raises each event.
ALTER TABLE hosts ADD COLUMN status text NOT NULL DEFAULT 'ONLINE';

CREATE TABLE host_events (
    event_id text        PRIMARY KEY,
    host_id  text        NOT NULL,
    hostname text        NOT NULL,
    ts       timestamptz NOT NULL,
    kind     text        NOT NULL, -- OFFLINE, ONLINE
    severity text        NOT NULL,
    message  text        NOT NULL
);
CREATE INDEX host_events_ts ON host_events (ts);
