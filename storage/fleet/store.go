// Package fleet is the production store: PostgreSQL as the source of truth for hosts,
// chain heads and the authoritative index of entries and alerts, and ClickHouse for the
// full history of entries (every payload, partitioned by month, ordered by host and
// time). One Store over the two clients implements storage.Store; its schema is in
// sql/postgres and sql/clickhouse, and docs/adr/0007-clickhouse-postgres-store.md says
// why it is split this way.
//
// Failure policy. AppendEntries writes ClickHouse first, then records the entries in
// PostgreSQL in a transaction that also moves the chain head, and returns nil only once
// that transaction has committed: both stores then hold the entries, and only then does
// the collector ack. If ClickHouse is down, the call fails before PostgreSQL changes; if
// PostgreSQL is down, the call fails (ClickHouse may keep rows of it, which no read
// shows: see below). Either way the agent keeps the entries in its chain and resends
// them, and delivery resumes by itself when the store is back. Reads need both servers:
// they select in PostgreSQL and fetch payloads from ClickHouse, and fail when either is
// down.
//
// Write path. AppendEntries calls made at the same time (one per agent stream) are
// written together: a few writers each take every call queued when they are free and
// store them as one group, one ClickHouse insert and one PostgreSQL transaction, then
// answer each call (writer.go, docs/adr/0015-fleet-write-path.md). A call returns nil
// only once its group has committed; a group that fails fails all its calls, except
// that one PostgreSQL refuses for its data is written again call by call, so that such
// a call fails alone.
//
// De-duplication on (host_id, seq): PostgreSQL's chain_entries holds one row per entry,
// with its hash. Appends of one host are serialised across collectors by a PostgreSQL
// advisory lock held for the whole group write (the locks of a group taken in key
// order, so that groups sharing hosts wait rather than deadlock), and insert into
// ClickHouse only the entries PostgreSQL does not hold. A ClickHouse row whose
// (host_id, seq, hash) PostgreSQL does not hold is left by a write that failed after
// writing ClickHouse; reads take, for each entry PostgreSQL holds, the ClickHouse row
// with that hash, so such rows are never shown, and an entry held is never replaced by
// a resend or a forgery.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tripwire-project/tripwire/storage"
)

// Options name the two servers.
type Options struct {
	// ClickHouseAddr is the host:port of ClickHouse's native protocol (9000).
	ClickHouseAddr string
	// ClickHouseDatabase is created if it does not exist.
	ClickHouseDatabase string
	// PostgresDSN is a pgx connection string (URL or key=value) naming an existing
	// database; pool_max_conns in it sizes the pool (default 32).
	PostgresDSN string
	// Writers is how many groups of appends are written at once, each one ClickHouse
	// insert and one PostgreSQL transaction (0: 4). See writer.go.
	Writers int
	// Logger may be nil.
	Logger *slog.Logger
	// Registerer, if not nil, receives the store's write metrics: each server's time
	// and failures per group write (tripwire_collector_store_write_*).
	Registerer prometheus.Registerer
}

// Store is a storage.Store kept in PostgreSQL and ClickHouse.
//
// A Store is safe for concurrent use by many goroutines, and by many collector
// processes sharing the two databases: appends of one host are serialised through
// PostgreSQL, appends of different hosts run in parallel.
type Store struct {
	pg      *pgxpool.Pool
	ch      driver.Conn
	logger  *slog.Logger
	w       *writer
	metrics *writeMetrics // nil: none
}

var _ storage.Store = (*Store)(nil)

// defaultMaxConns is the PostgreSQL pool size unless the DSN sets pool_max_conns.
const defaultMaxConns = 32

// clickhouseTimeout bounds one ClickHouse round trip, so that a server that stops
// answering fails the call rather than holding it (and its PostgreSQL lock) for minutes.
const clickhouseTimeout = 30 * time.Second

// Open connects to both servers, creates the ClickHouse database if needed and brings
// both schemas up to date (Migrate), so that a collector starts on a current schema.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClickHouseAddr == "" || o.ClickHouseDatabase == "" || o.PostgresDSN == "" {
		return nil, errors.New("opening store: ClickHouse address and database and PostgreSQL DSN are all required")
	}
	pgCfg, err := pgxpool.ParseConfig(o.PostgresDSN)
	if err != nil {
		return nil, fmt.Errorf("opening store: PostgreSQL: %w", err)
	}
	if !strings.Contains(o.PostgresDSN, "pool_max_conns") {
		// Each append holds a connection while ClickHouse takes its batch; pgxpool's
		// default (4 on two cores) would make agents wait for one another.
		pgCfg.MaxConns = defaultMaxConns
	}
	pg, err := pgxpool.NewWithConfig(ctx, pgCfg)
	if err != nil {
		return nil, fmt.Errorf("opening store: PostgreSQL: %w", err)
	}
	if err := pg.Ping(ctx); err != nil {
		pg.Close()
		return nil, fmt.Errorf("opening store: connecting to PostgreSQL: %w", err)
	}
	ch, err := openClickHouse(ctx, o.ClickHouseAddr, o.ClickHouseDatabase)
	if err != nil {
		pg.Close()
		return nil, fmt.Errorf("opening store: %w", err)
	}
	s := &Store{pg: pg, ch: ch, logger: o.Logger, metrics: newWriteMetrics(o.Registerer)}
	if err := s.migrate(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("opening store: %w", err), s.Close())
	}
	writers := o.Writers
	if writers <= 0 {
		writers = defaultWriters
	}
	s.w = newWriter(s, writers, o.Logger)
	o.Logger.Debug("store open", "clickhouse", o.ClickHouseAddr, "database", o.ClickHouseDatabase)
	return s, nil
}

// openClickHouse creates the database if it does not exist and returns a connection
// pool using it.
func openClickHouse(ctx context.Context, addr, database string) (driver.Conn, error) {
	opts := func(db string) *clickhouse.Options {
		return &clickhouse.Options{
			Addr: []string{addr}, Auth: clickhouse.Auth{Database: db},
			DialTimeout: 10 * time.Second, ReadTimeout: clickhouseTimeout,
		}
	}
	boot, err := clickhouse.Open(opts(""))
	if err != nil {
		return nil, fmt.Errorf("ClickHouse: %w", err)
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(database))
	if err := errors.Join(err, boot.Close()); err != nil {
		return nil, fmt.Errorf("creating ClickHouse database %q: %w", database, err)
	}
	ch, err := clickhouse.Open(opts(database))
	if err != nil {
		return nil, fmt.Errorf("ClickHouse: %w", err)
	}
	if err := ch.Ping(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("connecting to ClickHouse: %w", err), ch.Close())
	}
	return ch, nil
}

// quoteIdent quotes a ClickHouse identifier.
func quoteIdent(name string) string {
	out := []byte{'`'}
	for i := 0; i < len(name); i++ {
		if name[i] == '`' || name[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, name[i])
	}
	return string(append(out, '`'))
}

// Close stops the writer and releases both connection pools. Calls in flight must have
// returned.
func (s *Store) Close() error {
	if s.w != nil {
		s.w.close()
	}
	s.pg.Close()
	if err := s.ch.Close(); err != nil {
		return fmt.Errorf("closing ClickHouse connections: %w", err)
	}
	return nil
}
