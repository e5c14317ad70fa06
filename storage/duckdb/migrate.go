package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	schema "github.com/tripwire-project/tripwire/sql/duckdb"
	"github.com/tripwire-project/tripwire/storage"
)

// SchemaTooNewError is returned by Open for a file whose schema was migrated by a newer
// build than this one: this build would not know how to use it.
type SchemaTooNewError struct {
	Version int // highest version applied to the file
	Known   int // highest version this build knows
}

// Error says what happened and what to do about it.
func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("database schema is at version %d but this build knows versions up to %d: run a collector at least as new as the one that wrote the file", e.Version, e.Known)
}

// migrate applies, in order, each migration of sql/duckdb that the database has not
// recorded in schema_migrations, each in its own transaction with its record. Running it
// again on an up-to-date database changes nothing.
func migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	return migrateFS(ctx, db, schema.Migrations, logger)
}

func migrateFS(ctx context.Context, db *sql.DB, fsys fs.FS, logger *slog.Logger) error {
	ms, err := storage.LoadMigrations(fsys)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER     PRIMARY KEY,
		name       VARCHAR     NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL
	)`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := db.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("reading schema_migrations: %w", err)
	}
	maxApplied := 0
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("reading schema_migrations: %w", err)
		}
		applied[v] = true
		maxApplied = max(maxApplied, v)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("reading schema_migrations: %w", err)
	}
	known := 0
	if len(ms) > 0 {
		known = ms[len(ms)-1].Version
	}
	if maxApplied > known {
		return &SchemaTooNewError{Version: maxApplied, Known: known}
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if err := applyMigration(ctx, db, m); err != nil {
			return err
		}
		logger.Info("applied schema migration", "version", m.Version, "file", m.Name)
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m storage.Migration) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("applying migration %s: %w", m.Name, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("applying migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())",
		m.Version, m.Name); err != nil {
		return fmt.Errorf("recording migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing migration %s: %w", m.Name, err)
	}
	return nil
}

// checkSchema refuses a file whose 0001_init predates the edit, made before the first
// release, that stores event times to the nanosecond: on such a file the store would
// silently round times and filters to the microsecond. It runs before the migrations,
// which would fail on such a file less clearly; a new file has no entries table yet.
func checkSchema(ctx context.Context, db *sql.DB) error {
	var typ string
	err := db.QueryRowContext(ctx, `SELECT data_type FROM duckdb_columns()
		WHERE database_name = current_database() AND schema_name = 'main'
			AND table_name = 'entries' AND column_name = 'ts'`).Scan(&typ)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the type of entries.ts: %w", err)
	}
	if typ != "TIMESTAMP_NS" {
		return fmt.Errorf("entries.ts is %s, not TIMESTAMP_NS: the file was created by a pre-release build; move it aside and let the collector create a new one", typ)
	}
	return nil
}
