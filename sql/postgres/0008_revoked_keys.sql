-- 0008_revoked_keys: revocation by key as well as by serial.
--
-- Renewal keeps a host's key (ADR 0013), so the certificates it renewed before a
-- revocation carry the key of the one revoked and are still valid. `pki revoke --host`
-- now records that key: every replica then refuses any certificate carrying it.
-- Written to run again without harm (IF NOT EXISTS), like every migration.

-- The SHA-256 of the SubjectPublicKeyInfo of the certificate each host last registered
-- with, lowercase hex ('' for a host last registered before this column).
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS cert_key_sha256 text NOT NULL DEFAULT '';

-- The key of a revoked certificate, when known: every certificate with this key is
-- refused ('' revokes the serial alone).
ALTER TABLE revoked_certs ADD COLUMN IF NOT EXISTS key_sha256 text NOT NULL DEFAULT '';
