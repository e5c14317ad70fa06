package fleet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	chschema "github.com/tripwire-project/tripwire/sql/clickhouse"
	pgschema "github.com/tripwire-project/tripwire/sql/postgres"
	"github.com/tripwire-project/tripwire/storage"
)

// SchemaTooNewError is returned by Open for a database migrated by a newer build than
// this one: this build would not know how to use it.
type SchemaTooNewError struct {
	Engine  string // "PostgreSQL" or "ClickHouse"
	Version int    // highest version applied to the database
	Known   int    // highest version this build knows
}

// Error says what happened and what to do about it.
func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("%s schema is at version %d but this build knows versions up to %d: run a collector at least as new as the one that migrated it", e.Engine, e.Version, e.Known)
}

// migrationLock is the PostgreSQL advisory lock key held while migrating, so that
// collectors starting together apply each migration once.
const migrationLock int64 = 0x7472697077697265 // "tripwire"

// migrate applies the migrations of sql/postgres and then of sql/clickhouse that each
// database has not recorded, holding migrationLock. Running it again on up-to-date
// databases changes nothing.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pg.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrating: taking the migration lock: %w", err)
	}
	defer func() {
		// A lock left held would die with the session anyway; a failure here is logged.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock); err != nil {
			s.logger.Warn("releasing the migration lock", "err", err)
		}
	}()
	if err := s.migratePostgres(ctx, conn.Conn(), pgschema.Migrations); err != nil {
		return err
	}
	return s.migrateClickHouse(ctx, chschema.Migrations)
}

// pending returns the migrations of ms not in applied, or a SchemaTooNewError.
func pending(engine string, ms []storage.Migration, applied map[int]bool) ([]storage.Migration, error) {
	known, maxApplied := 0, 0
	if len(ms) > 0 {
		known = ms[len(ms)-1].Version
	}
	for v := range applied {
		maxApplied = max(maxApplied, v)
	}
	if maxApplied > known {
		return nil, &SchemaTooNewError{Engine: engine, Version: maxApplied, Known: known}
	}
	var out []storage.Migration
	for _, m := range ms {
		if !applied[m.Version] {
			out = append(out, m)
		}
	}
	return out, nil
}

// migratePostgres applies each pending migration in its own transaction, with its
// record in schema_migrations.
func (s *Store) migratePostgres(ctx context.Context, conn *pgx.Conn, fsys fs.FS) error {
	ms, err := storage.LoadMigrations(fsys)
	if err != nil {
		return fmt.Errorf("PostgreSQL %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL
	)`); err != nil {
		return fmt.Errorf("creating PostgreSQL schema_migrations: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("reading PostgreSQL schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("reading PostgreSQL schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	for _, v := range versions {
		applied[int(v)] = true
	}
	todo, err := pending("PostgreSQL", ms, applied)
	if err != nil {
		return err
	}
	for _, m := range todo {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: pgx sends the file with the simple protocol, every statement
			// of it in this transaction.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("applying PostgreSQL migration %s: %w", m.Name, err)
		}
		s.logger.Info("applied schema migration", "engine", "postgresql", "version", m.Version, "file", m.Name)
	}
	return nil
}

// migrateClickHouse applies each pending migration statement by statement, then records
// it. ClickHouse has no transactional DDL: a storage.Migration cut short is not recorded and is
// applied again whole, which its idempotent statements allow.
func (s *Store) migrateClickHouse(ctx context.Context, fsys fs.FS) error {
	ms, err := storage.LoadMigrations(fsys)
	if err != nil {
		return fmt.Errorf("ClickHouse %w", err)
	}
	if err := s.ch.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    UInt32,
		name       String,
		applied_at DateTime
	) ENGINE = ReplacingMergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("creating ClickHouse schema_migrations: %w", err)
	}
	rows, err := s.ch.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("reading ClickHouse schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("reading ClickHouse schema_migrations: %w", err)
		}
		applied[int(v)] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("reading ClickHouse schema_migrations: %w", err)
	}
	todo, err := pending("ClickHouse", ms, applied)
	if err != nil {
		return err
	}
	for _, m := range todo {
		for i, stmt := range statements(m.SQL) {
			if err := s.ch.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("applying ClickHouse migration %s, statement %d: %w", m.Name, i+1, err)
			}
		}
		b, err := s.ch.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at)")
		if err == nil {
			err = b.Append(uint32(m.Version), m.Name, time.Now())
		}
		if err == nil {
			err = b.Send()
		}
		if err != nil {
			return fmt.Errorf("recording ClickHouse migration %s: %w", m.Name, err)
		}
		s.logger.Info("applied schema migration", "engine", "clickhouse", "version", m.Version, "file", m.Name)
	}
	return nil
}

// statements splits a ClickHouse migration into its statements: comment lines (--) are
// dropped and a statement ends with ';' at the end of a line.
func statements(text string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(text) {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			if stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); stmt != "" {
				out = append(out, stmt)
			}
			cur.Reset()
		}
	}
	if stmt := strings.TrimSpace(cur.String()); stmt != "" {
		out = append(out, stmt)
	}
	return out
}
