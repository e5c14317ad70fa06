-- The certificate each host last registered with, and the revoked certificates: the
-- collector refuses a revoked serial at the handshake and cuts its open stream.
ALTER TABLE hosts ADD COLUMN cert_serial VARCHAR DEFAULT '';
ALTER TABLE hosts ADD COLUMN cert_not_after TIMESTAMPTZ;

CREATE TABLE revoked_certs (
    serial     VARCHAR     PRIMARY KEY, -- lowercase hex
    host_id    VARCHAR     NOT NULL,
    hostname   VARCHAR     NOT NULL,
    revoked_at TIMESTAMPTZ NOT NULL,
    reason     VARCHAR     NOT NULL
);
