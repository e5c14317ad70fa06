package forensics

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// StatementError reports a statement of a script that DuckDB refused.
type StatementError struct {
	Index  int   // 1-based number of the statement in the script
	Offset int64 // byte offset in the script just past the statement
	Err    error
}

func (e *StatementError) Error() string {
	return fmt.Sprintf("statement %d (ending at script offset %d): %v", e.Index, e.Offset, e.Err)
}

func (e *StatementError) Unwrap() error { return e.Err }

// OpenDuckDB opens a DuckDB database for loading an export: in memory for path "", else
// the file at path (created if absent). The session time zone is UTC.
func OpenDuckDB(path string) (*sql.DB, error) {
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("opening duckdb %q: path contains '?'", path)
	}
	connector, err := duckdb.NewConnector(path, nil)
	if err != nil {
		return nil, fmt.Errorf("opening duckdb %q: %w", path, err)
	}
	db := sql.OpenDB(connector)
	// One connection: a script's BEGIN and COMMIT must run on the connection of its
	// statements, and SET VARIABLE must reach the connection of the queries.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("SET TimeZone = 'UTC'"); err != nil {
		return nil, errors.Join(fmt.Errorf("opening duckdb %q: %w", path, err), db.Close())
	}
	return db, nil
}

// LoadScript executes a SQL script on db statement by statement, as the duckdb shell
// does, reading it in bounded memory. It returns the number of statements run. db must
// be limited to one connection (OpenDuckDB does that). On a failed statement inside
// the script's transaction, the transaction is rolled back.
func LoadScript(ctx context.Context, db *sql.DB, r io.Reader) (int, error) {
	sr := NewStatementReader(r)
	n := 0
	for {
		stmt, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("loading script: %w", err)
		}
		n++
		if _, err := db.ExecContext(ctx, string(stmt)); err != nil {
			_, _ = db.ExecContext(ctx, "ROLLBACK")
			return n, fmt.Errorf("loading script: %w", &StatementError{Index: n, Offset: sr.off, Err: err})
		}
	}
}

// ExportKind is what sniffing a file found it to be.
type ExportKind int

// Kinds of export file.
const (
	KindSQL ExportKind = iota
	KindNDJSON
	KindParquet
)

// sniff tells a SQL script, an NDJSON and a Parquet export apart by their first bytes:
// "PAR1" is Parquet, '{' (after blanks) is NDJSON, anything else SQL.
func sniff(head []byte) ExportKind {
	if bytes.HasPrefix(head, []byte("PAR1")) {
		return KindParquet
	}
	if t := bytes.TrimLeft(head, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return KindNDJSON
	}
	return KindSQL
}

// LoadExport loads the export file at path (SQL script, NDJSON or Parquet, told apart
// by their first bytes) into db, which then holds the tables and views of a SQL export.
// A SQL script may come from a pipe (/dev/stdin); NDJSON and Parquet are read by
// DuckDB from the path.
func LoadExport(ctx context.Context, db *sql.DB, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading export: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading export %s: %w", path, err)
	}
	kind := sniff(head)
	if kind == KindSQL {
		_, err = LoadScript(ctx, db, br)
		return err
	}
	lit := string(AppendSQLString(nil, []byte(path)))
	cols := "host_id, pos, seq, ts, kind, tripwire_type, rule_name, severity, prev_hash, hash, payload, payload_bytes, in_filter"
	from := "read_parquet(" + lit + ")"
	forks := "fork_of, fork_seq"
	if kind == KindNDJSON {
		from = "(" + ndjsonSelect(lit) + ")"
	} else {
		// A Parquet export made before forks were exported has no fork columns.
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM parquet_schema("+lit+") WHERE name = 'fork_of'").Scan(&n); err != nil {
			return fmt.Errorf("reading the schema of export %s: %w", path, err)
		}
		if n == 0 {
			forks = "NULL, NULL"
		}
	}
	fill := []string{
		"INSERT INTO entries SELECT " + cols + " FROM " + from,
		"INSERT INTO hosts SELECT DISTINCT host_id, hostname, NULL, NULL, " + forks + " FROM " + from,
	}
	stmts := "BEGIN TRANSACTION;\n" + schemaTables + schemaViews + strings.Join(fill, ";\n") + ";\nCOMMIT;\n"
	if _, err := LoadScript(ctx, db, strings.NewReader(stmts)); err != nil {
		return fmt.Errorf("loading export %s: %w", path, err)
	}
	return nil
}
