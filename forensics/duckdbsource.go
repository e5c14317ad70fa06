package forensics

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// DuckDBSource reads the collector's embedded store (storage/duckdb, schema in
// sql/duckdb) from its file, opened read-only. DuckDB lets one process at a time open a
// file that another holds for writing, so the collector must be stopped first.
type DuckDBSource struct {
	path string
	db   *sql.DB
}

// NewDuckDBSource opens the store file at path read-only.
func NewDuckDBSource(path string) (*DuckDBSource, error) {
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("opening duckdb store: path %q contains '?'", path)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening duckdb store: %w", err)
	}
	connector, err := duckdb.NewConnector(path+"?access_mode=read_only", nil)
	if err != nil {
		return nil, fmt.Errorf("opening duckdb store %s read-only (if the collector is running, stop it first: "+
			"DuckDB locks the file while the collector has it open): %w", path, err)
	}
	db := sql.OpenDB(connector)
	var n int
	if err := db.QueryRow("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('entries', 'hosts', 'chain_heads')").Scan(&n); err != nil {
		return nil, errors.Join(fmt.Errorf("opening duckdb store %s: %w", path, err), db.Close())
	}
	if n != 3 {
		return nil, errors.Join(fmt.Errorf("opening duckdb store %s: not a tripwire store (tables entries, hosts, chain_heads missing)", path), db.Close())
	}
	return &DuckDBSource{path: path, db: db}, nil
}

// Describe implements Source.
func (s *DuckDBSource) Describe() string { return "duckdb:" + s.path }

// Hosts implements Source: every host with entries, with its name, the chain head the
// collector stored for it and, for a fork, what it is a fork of.
func (s *DuckDBSource) Hosts(ctx context.Context) ([]Host, error) {
	// A store migrated before forks were kept (sql/duckdb 0006) has no fork columns.
	var forkCols int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'hosts' AND column_name IN ('fork_of', 'fork_seq')`).Scan(&forkCols); err != nil {
		return nil, fmt.Errorf("listing hosts of %s: %w", s.path, err)
	}
	forks := "'', 0"
	if forkCols == 2 {
		forks = "coalesce(h.fork_of, ''), coalesce(h.fork_seq, 0)"
	}
	rows, err := s.db.QueryContext(ctx, `
SELECT e.host_id, coalesce(h.hostname, e.host_id), coalesce(c.head_seq, 0), coalesce(c.head_hash, ''), `+forks+`
FROM (SELECT DISTINCT host_id FROM entries) AS e
LEFT JOIN hosts AS h USING (host_id)
LEFT JOIN chain_heads AS c USING (host_id)
ORDER BY e.host_id`)
	if err != nil {
		return nil, fmt.Errorf("listing hosts of %s: %w", s.path, err)
	}
	defer rows.Close()
	var hosts []Host
	for rows.Next() {
		var h Host
		if err := rows.Scan(&h.ID, &h.Name, &h.HeadSeq, &h.HeadHash, &h.ForkOf, &h.ForkSeq); err != nil {
			return nil, fmt.Errorf("listing hosts of %s: %w", s.path, err)
		}
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing hosts of %s: %w", s.path, err)
	}
	return hosts, nil
}

// Entries implements Source, in seq order. Time, kind, type, rule and severity are read
// from the payload, as for a segment directory, so that both sources export one chain
// identically.
func (s *DuckDBSource) Entries(ctx context.Context, hostID string, fn func(*Entry) error) error {
	rows, err := s.db.QueryContext(ctx,
		"SELECT seq, prev_hash, hash, payload FROM entries WHERE host_id = ? ORDER BY seq", hostID)
	if err != nil {
		return fmt.Errorf("reading entries of host %q: %w", hostID, err)
	}
	defer rows.Close()
	e := &Entry{HostID: hostID}
	var payload string
	for rows.Next() {
		if err := rows.Scan(&e.Seq, &e.PrevHash, &e.Hash, &payload); err != nil {
			return fmt.Errorf("reading entries of host %q: %w", hostID, err)
		}
		e.Payload = []byte(payload)
		setMeta(e, e.Payload)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading entries of host %q: %w", hostID, err)
	}
	return nil
}

// Close implements Source.
func (s *DuckDBSource) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing duckdb store %s: %w", s.path, err)
	}
	return nil
}
