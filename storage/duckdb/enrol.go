package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// joinTokenColumns are the columns scanJoinToken reads, in order.
const joinTokenColumns = `token_id, secret_sha256, hostname, host_id, created_at, created_by, expires_at, used_at, used_from`

// AddJoinToken records a new enrolment token.
func (s *Store) AddJoinToken(ctx context.Context, t storage.JoinToken) error {
	if err := s.lockWrite(ctx); err != nil {
		return fmt.Errorf("recording join token %s: waiting for the writer: %w", t.ID, err)
	}
	defer s.unlockWrite()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO join_tokens (`+joinTokenColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.SecretSHA256, t.Hostname, t.HostID, t.CreatedAt.UTC(), t.CreatedBy, t.ExpiresAt.UTC(), storage.UTCPtr(t.UsedAt), t.UsedFrom); err != nil {
		return fmt.Errorf("recording join token %s: %w", t.ID, err)
	}
	return nil
}

// RedeemJoinToken spends a token with one conditional UPDATE. Writes are serialised by
// the Store, so concurrent redeems run one after the other and the second finds the
// token spent.
func (s *Store) RedeemJoinToken(ctx context.Context, id, secretSHA256 string, now time.Time, from string) (storage.JoinToken, error) {
	if err := s.lockWrite(ctx); err != nil {
		return storage.JoinToken{}, fmt.Errorf("redeeming join token %s: waiting for the writer: %w", id, err)
	}
	defer s.unlockWrite()
	var t storage.JoinToken
	err := s.inSQLTx(ctx, func(tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, `UPDATE join_tokens SET used_at = ?, used_from = ?
			WHERE token_id = ? AND secret_sha256 = ? AND used_at IS NULL AND expires_at > ?
			RETURNING `+joinTokenColumns, now.UTC(), from, id, secretSHA256, now.UTC())
		var err error
		t, err = scanJoinToken(row)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Refused: say why, from the row as it stands.
		t, err = scanJoinToken(tx.QueryRowContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE token_id = ?`, id))
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		return storage.TokenRefusal(t, err == nil, secretSHA256, now)
	})
	if err != nil {
		return storage.JoinToken{}, fmt.Errorf("redeeming join token %s: %w", id, err)
	}
	return t, nil
}

// JoinTokens returns every token, newest first.
func (s *Store) JoinTokens(ctx context.Context) ([]storage.JoinToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens ORDER BY created_at DESC, token_id`)
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

func scanJoinToken(row interface{ Scan(...any) error }) (storage.JoinToken, error) {
	var t storage.JoinToken
	if err := row.Scan(&t.ID, &t.SecretSHA256, &t.Hostname, &t.HostID, &t.CreatedAt, &t.CreatedBy, &t.ExpiresAt, &t.UsedAt, &t.UsedFrom); err != nil {
		return storage.JoinToken{}, err
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC(), storage.UTCPtr(t.UsedAt)
	return t, nil
}
