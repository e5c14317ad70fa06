-- The certificate each host last registered with, and the revoked certificates: every
-- collector replica refuses a revoked serial at the handshake and cuts its open stream.
ALTER TABLE hosts ADD COLUMN cert_serial text NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN cert_not_after timestamptz;

CREATE TABLE revoked_certs (
    serial     text        PRIMARY KEY, -- lowercase hex
    host_id    text        NOT NULL,
    hostname   text        NOT NULL,
    revoked_at timestamptz NOT NULL,
    reason     text        NOT NULL
);
