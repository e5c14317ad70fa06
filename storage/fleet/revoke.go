package fleet

import (
	"context"
	"fmt"

	"github.com/tripwire-project/tripwire/storage"
)

// Revoke records a revoked certificate in PostgreSQL, where every collector replica
// reads it; a serial already revoked keeps its first record.
func (s *Store) Revoke(ctx context.Context, c storage.RevokedCert) error {
	if _, err := s.pg.Exec(ctx, `INSERT INTO revoked_certs (serial, host_id, hostname, revoked_at, reason)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (serial) DO NOTHING`,
		c.Serial, c.HostID, c.Hostname, c.RevokedAt.UTC(), c.Reason); err != nil {
		return fmt.Errorf("revoking %s: %w", c.Serial, err)
	}
	return nil
}

// Revoked returns every revoked certificate, by serial.
func (s *Store) Revoked(ctx context.Context) ([]storage.RevokedCert, error) {
	rows, err := s.pg.Query(ctx, `SELECT serial, host_id, hostname, revoked_at, reason FROM revoked_certs ORDER BY serial`)
	if err != nil {
		return nil, fmt.Errorf("listing revoked certificates: %w", err)
	}
	defer rows.Close()
	var out []storage.RevokedCert
	for rows.Next() {
		var c storage.RevokedCert
		if err := rows.Scan(&c.Serial, &c.HostID, &c.Hostname, &c.RevokedAt, &c.Reason); err != nil {
			return nil, fmt.Errorf("listing revoked certificates: %w", err)
		}
		c.RevokedAt = c.RevokedAt.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
