-- 0007_enrolment: one-time join tokens, and the start of each host's certificate.
--
-- Written to run again without harm (IF NOT EXISTS), like every migration. Versions 0005
-- and 0006 come from other changes; the runner applies missing versions as a set.

-- join_tokens: the enrolment tokens made by `tripwire-collector pki token`. Only the
-- SHA-256 of a token's secret is kept. A token is spent by the first successful
-- enrolment (used_at set by a conditional UPDATE); spent and expired tokens stay, for
-- audit. host_id is the new host id the enrolled certificate carries.
CREATE TABLE IF NOT EXISTS join_tokens (
    token_id      VARCHAR     PRIMARY KEY, -- 16 lowercase hex
    secret_sha256 VARCHAR     NOT NULL,    -- lowercase hex
    hostname      VARCHAR     NOT NULL,
    host_id       VARCHAR     NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    created_by    VARCHAR     NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ,
    used_from     VARCHAR     NOT NULL DEFAULT ''
);

-- The NotBefore of the certificate each host last registered with: with cert_not_after
-- it gives the certificate's lifetime, which the expiry warning needs to tell an overdue
-- renewal from a short-lived certificate.
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS cert_not_before TIMESTAMPTZ;
