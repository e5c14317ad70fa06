package fleet

import (
	"context"
	"fmt"

	"github.com/tripwire-project/tripwire/storage"
)

// Revoke records a revoked certificate in PostgreSQL, where every collector replica
// reads it; a serial already revoked keeps its first record, but gains a key it was
// revoked without.
func (s *Store) Revoke(ctx context.Context, c storage.RevokedCert) error {
	if _, err := s.pg.Exec(ctx, `INSERT INTO revoked_certs (serial, host_id, hostname, revoked_at, reason, key_sha256)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (serial) DO UPDATE SET key_sha256 = excluded.key_sha256
		WHERE revoked_certs.key_sha256 = '' AND excluded.key_sha256 <> ''`,
		c.Serial, c.HostID, c.Hostname, c.RevokedAt.UTC(), c.Reason, c.KeySHA256); err != nil {
		return fmt.Errorf("revoking %s: %w", c.Serial, err)
	}
	return nil
}

// Revoked returns every revoked certificate, by serial.
func (s *Store) Revoked(ctx context.Context) ([]storage.RevokedCert, error) {
	rows, err := s.pg.Query(ctx, `SELECT serial, COALESCE(key_sha256, ''), host_id, hostname, revoked_at, reason FROM revoked_certs ORDER BY serial`)
	if err != nil {
		return nil, fmt.Errorf("listing revoked certificates: %w", err)
	}
	defer rows.Close()
	var out []storage.RevokedCert
	for rows.Next() {
		var c storage.RevokedCert
		if err := rows.Scan(&c.Serial, &c.KeySHA256, &c.HostID, &c.Hostname, &c.RevokedAt, &c.Reason); err != nil {
			return nil, fmt.Errorf("listing revoked certificates: %w", err)
		}
		c.RevokedAt = c.RevokedAt.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
