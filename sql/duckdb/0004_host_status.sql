-- The dead-man switch: each host's status, and the host events the collector raises
-- itself (a host gone silent, a host back).
ALTER TABLE hosts ADD COLUMN status VARCHAR DEFAULT 'ONLINE';

CREATE TABLE host_events (
    event_id VARCHAR     PRIMARY KEY,
    host_id  VARCHAR     NOT NULL,
    hostname VARCHAR     NOT NULL,
    ts       TIMESTAMPTZ NOT NULL,
    kind     VARCHAR     NOT NULL, -- OFFLINE, ONLINE
    severity VARCHAR     NOT NULL,
    message  VARCHAR     NOT NULL
);
