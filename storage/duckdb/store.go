// Package duckdb is the embedded default store: hosts, chain entries and the alerts they
// record, kept in one DuckDB file that the collector links in (cgo), so that a collector
// needs no database server. The same file can be opened afterwards with the duckdb CLI
// for forensics: the schema (sql/duckdb) is plain tables and an alerts view, event times
// are UTC TIMESTAMP_NS, to the nanosecond as the chain payload has them, the collector's
// own times are TIMESTAMPTZ, and every entry keeps the exact payload text its hash
// covers, so that
//
//	SELECT seq FROM entries WHERE hash <> sha256(prev_hash || payload)
//
// finds any entry that does not hash.
//
// Failure policy: every write is one DuckDB transaction, committed (and so written to
// DuckDB's write-ahead log and synced) before the method returns nil; on any error
// nothing of the call is kept and the error is returned, so the collector does not ack
// and the agent resends. A DuckDB file can be open in one process at a time: a second
// collector on the same file fails in Open.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/tripwire-project/tripwire/storage"
)

// Store is a storage.Store kept in one DuckDB file.
//
// A Store is safe for concurrent use by many goroutines. Reads run in parallel, each on
// its own DuckDB connection and snapshot. Writes are serialised by the Store: DuckDB
// resolves concurrent writes to the same rows by aborting one transaction rather than
// waiting, and each commit syncs the write-ahead log, so one writer at a time loses no
// throughput and never fails on a conflict. A write waiting its turn gives up when its
// context ends.
type Store struct {
	db     *sql.DB
	logger *slog.Logger
	// writer is a one-slot semaphore held by every write; a channel rather than a mutex
	// so that a waiting writer can give up when its context ends.
	writer chan struct{}
}

var _ storage.Store = (*Store)(nil)

// Open opens or creates the DuckDB file at path, creating its directory if needed, and
// brings its schema up to date. An empty path opens a private in-memory database, for
// tests. logger may be nil.
//
// Every connection runs with the session time zone set to UTC, so times read back and
// any time arithmetic done in SQL are in UTC whatever the machine's zone. Once open, the
// database has external access disabled: SQL cannot reach any other file.
func Open(path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if strings.Contains(path, "?") {
		// The driver would read what follows '?' as configuration options.
		return nil, fmt.Errorf("opening duckdb store: path %q contains '?'", path)
	}
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("opening duckdb store: creating directory: %w", err)
		}
	}
	connector, err := duckdb.NewConnector(path, initConn)
	if err != nil {
		return nil, fmt.Errorf("opening duckdb store %q: %w", path, err)
	}
	db := sql.OpenDB(connector) // db.Close closes the connector.
	s := &Store{db: db, logger: logger, writer: make(chan struct{}, 1)}
	if err := checkSchema(context.Background(), db); err != nil {
		return nil, errors.Join(fmt.Errorf("opening duckdb store %q: %w", path, err), db.Close())
	}
	if err := migrate(context.Background(), db, logger); err != nil {
		return nil, errors.Join(fmt.Errorf("opening duckdb store %q: %w", path, err), db.Close())
	}
	// No SQL run by the store, Query included, may read or write a file other than the
	// database's own; DuckDB refuses to turn this back on while the database is open.
	if _, err := db.ExecContext(context.Background(), "SET enable_external_access = false"); err != nil {
		return nil, errors.Join(fmt.Errorf("opening duckdb store %q: disabling external access: %w", path, err), db.Close())
	}
	logger.Debug("duckdb store open", "path", path)
	return s, nil
}

// initConn prepares each new DuckDB connection.
func initConn(conn driver.ExecerContext) error {
	if _, err := conn.ExecContext(context.Background(), "SET TimeZone = 'UTC'", nil); err != nil {
		return fmt.Errorf("setting time zone: %w", err)
	}
	return nil
}

// Close checkpoints the file and releases it. Calls in flight must have returned.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing duckdb store: %w", err)
	}
	return nil
}

// lockWrite takes the writer slot, or gives up when ctx ends.
func (s *Store) lockWrite(ctx context.Context) error {
	select {
	case s.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) unlockWrite() { <-s.writer }
