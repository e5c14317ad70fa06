package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/tripwire-project/tripwire/storage"
)

// EntryHash returns the hash of the entry seq held for the host.
func (s *Store) EntryHash(ctx context.Context, hostID string, seq uint64) (string, error) {
	if seq > math.MaxInt64 { // never stored (storage.ValidateEntries), and the driver refuses it
		return "", fmt.Errorf("reading entry %d of host %q: %w", seq, hostID, storage.ErrNotFound)
	}
	var hash string
	err := s.db.QueryRowContext(ctx, "SELECT hash FROM entries WHERE host_id = ? AND seq = ?", hostID, seq).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("reading entry %d of host %q: %w", seq, hostID, storage.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading entry %d of host %q: %w", seq, hostID, err)
	}
	return hash, nil
}

// nullIfEmpty is s, or NULL for "".
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullIfZero is n, or NULL for 0.
func nullIfZero(n uint64) any {
	if n == 0 {
		return nil
	}
	return n
}
