package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/storage"
)

// EntryHash returns the hash of the entry seq held for the host, from PostgreSQL's
// index, which decides what is held.
func (s *Store) EntryHash(ctx context.Context, hostID string, seq uint64) (string, error) {
	if seq > math.MaxInt64 { // never stored (storage.ValidateEntries)
		return "", fmt.Errorf("reading entry %d of host %q: %w", seq, hostID, storage.ErrNotFound)
	}
	var hash string
	err := s.pg.QueryRow(ctx, "SELECT hash FROM chain_entries WHERE host_id = $1 AND seq = $2", hostID, int64(seq)).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
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
	return int64(n)
}
