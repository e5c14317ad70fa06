package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/storage"
)

// joinTokenColumns are the columns scanJoinToken reads, in order.
const joinTokenColumns = `token_id, secret_sha256, hostname, host_id, created_at, created_by, expires_at, used_at, used_from`

// AddJoinToken records a new enrolment token in PostgreSQL, where every collector
// replica can redeem it.
func (s *Store) AddJoinToken(ctx context.Context, t storage.JoinToken) error {
	if _, err := s.pg.Exec(ctx, `INSERT INTO join_tokens (`+joinTokenColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.ID, t.SecretSHA256, t.Hostname, t.HostID, t.CreatedAt.UTC(), t.CreatedBy, t.ExpiresAt.UTC(), storage.UTCPtr(t.UsedAt), t.UsedFrom); err != nil {
		return fmt.Errorf("recording join token %s: %w", t.ID, err)
	}
	return nil
}

// RedeemJoinToken spends a token with one conditional UPDATE. Of two replicas redeeming
// one token at once, the second's UPDATE waits for the first's row lock and then, under
// READ COMMITTED, re-checks its WHERE against the spent row and matches nothing.
func (s *Store) RedeemJoinToken(ctx context.Context, id, secretSHA256 string, now time.Time, from string) (storage.JoinToken, error) {
	t, err := scanJoinToken(s.pg.QueryRow(ctx, `UPDATE join_tokens SET used_at = $1, used_from = $2
		WHERE token_id = $3 AND secret_sha256 = $4 AND used_at IS NULL AND expires_at > $1
		RETURNING `+joinTokenColumns, now.UTC(), from, id, secretSHA256))
	if err == nil {
		return t, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return storage.JoinToken{}, fmt.Errorf("redeeming join token %s: %w", id, err)
	}
	// Refused: say why, from the row as it stands.
	t, err = scanJoinToken(s.pg.QueryRow(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE token_id = $1`, id))
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return storage.JoinToken{}, fmt.Errorf("redeeming join token %s: %w", id, err)
	}
	return storage.JoinToken{}, fmt.Errorf("redeeming join token %s: %w", id, storage.TokenRefusal(t, err == nil, secretSHA256, now))
}

// JoinTokens returns every token, newest first.
func (s *Store) JoinTokens(ctx context.Context) ([]storage.JoinToken, error) {
	rows, err := s.pg.Query(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens ORDER BY created_at DESC, token_id`)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	defer rows.Close()
	var out []storage.JoinToken
	for rows.Next() {
		t, err := scanJoinToken(rows)
		if err != nil {
			return nil, fmt.Errorf("listing join tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	return out, nil
}

func scanJoinToken(row pgx.Row) (storage.JoinToken, error) {
	var t storage.JoinToken
	if err := row.Scan(&t.ID, &t.SecretSHA256, &t.Hostname, &t.HostID, &t.CreatedAt, &t.CreatedBy, &t.ExpiresAt, &t.UsedAt, &t.UsedFrom); err != nil {
		return storage.JoinToken{}, err
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC(), storage.UTCPtr(t.UsedAt)
	return t, nil
}
