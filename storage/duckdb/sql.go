package duckdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/google/uuid"

	"github.com/tripwire-project/tripwire/storage"
)

// Query runs one read-only statement over the store's tables and streams its rows to w.
//
// The collector holds the file open read-write, so DuckDB's read-only access mode (a
// property of the whole database) is not available to one query. Three mechanisms of
// the engine stand in for it (docs/adr/0012-read-only-sql-and-jwt.md):
//   - the statement is prepared and DuckDB's own parse names its type: anything but a
//     single SELECT or EXPLAIN (INSERT, COPY, ATTACH, SET, PRAGMA, CALL, several
//     statements...) is refused before it runs;
//   - it runs in a transaction begun READ ONLY, in which DuckDB refuses any write, and
//     which is rolled back whatever happens;
//   - the database runs with enable_external_access = false (set by Open, and it cannot
//     be set back while the database is open), so no statement reads or writes a file
//     (read_csv, COPY ... TO, glob) or attaches another database.
func (s *Store) Query(ctx context.Context, query string, maxRows int, w storage.RowWriter) (rows int, truncated bool, err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("running query: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("driver connection is a %T, not a duckdb connection", dc)
		}
		if _, err := c.ExecContext(ctx, "BEGIN TRANSACTION READ ONLY", nil); err != nil {
			return fmt.Errorf("beginning a read-only transaction: %w", err)
		}
		defer func() {
			if _, rbErr := c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK", nil); rbErr != nil {
				err = badConn{errors.Join(err, fmt.Errorf("rolling back: %w", rbErr))}
			}
		}()
		rows, truncated, err = streamQuery(ctx, c, query, maxRows, w)
		return err
	})
	return rows, truncated, err
}

// readOnlyTypes are the statement types Query runs.
var readOnlyTypes = map[duckdb.StmtType]bool{
	duckdb.STATEMENT_TYPE_SELECT:  true,
	duckdb.STATEMENT_TYPE_EXPLAIN: true,
}

func streamQuery(ctx context.Context, c *duckdb.Conn, query string, maxRows int, w storage.RowWriter) (n int, truncated bool, err error) {
	st, err := c.PrepareContext(ctx, query)
	if err != nil {
		return 0, false, refusedIfPermission(err)
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	stmt, ok := st.(*duckdb.Stmt)
	if !ok {
		return 0, false, fmt.Errorf("prepared statement is a %T, not a duckdb statement", st)
	}
	typ, err := stmt.StatementType()
	if err != nil {
		return 0, false, err
	}
	if !readOnlyTypes[typ] {
		return 0, false, fmt.Errorf("%w: only a single SELECT or EXPLAIN statement is run (this is a %s statement)", storage.ErrQueryRefused, stmtTypeName(typ))
	}
	if stmt.NumInput() > 0 {
		return 0, false, fmt.Errorf("the query has %d parameters; none can be bound", stmt.NumInput())
	}
	rs, err := stmt.QueryContext(ctx, nil)
	if err != nil {
		return 0, false, refusedIfPermission(err)
	}
	defer func() { err = errors.Join(err, rs.Close()) }()
	names := rs.Columns()
	cols := make([]storage.Column, len(names))
	typed, _ := rs.(driver.RowsColumnTypeDatabaseTypeName)
	for i, name := range names {
		cols[i].Name = name
		if typed != nil {
			cols[i].Type = typed.ColumnTypeDatabaseTypeName(i)
		}
	}
	if err := w.Columns(cols); err != nil {
		return 0, false, err
	}
	dest := make([]driver.Value, len(names))
	values := make([]any, len(names))
	for {
		err := rs.Next(dest)
		if errors.Is(err, io.EOF) {
			return n, false, nil
		}
		if err != nil {
			return n, false, err
		}
		if n == maxRows {
			return n, true, nil
		}
		for i, v := range dest {
			if b, ok := v.([]byte); ok && cols[i].Type == "UUID" && len(b) == 16 {
				v = uuid.UUID(b).String() // the driver hands UUIDs over as their 16 bytes
			}
			values[i] = storage.JSONValue(v)
		}
		if err := w.Row(values); err != nil {
			return n, false, err
		}
		n++
	}
}

// refusedIfPermission marks DuckDB's permission errors (a file access with external
// access disabled, a write in a read-only transaction) as refusals.
func refusedIfPermission(err error) error {
	var de *duckdb.Error
	if errors.As(err, &de) && (de.Type == duckdb.ErrorTypePermission || de.Type == duckdb.ErrorTypeTransaction) {
		return fmt.Errorf("%w: %w", storage.ErrQueryRefused, err)
	}
	return err
}

// stmtTypeName names a statement type for an error message.
func stmtTypeName(t duckdb.StmtType) string {
	names := map[duckdb.StmtType]string{
		duckdb.STATEMENT_TYPE_INSERT: "INSERT", duckdb.STATEMENT_TYPE_UPDATE: "UPDATE",
		duckdb.STATEMENT_TYPE_DELETE: "DELETE", duckdb.STATEMENT_TYPE_CREATE: "CREATE",
		duckdb.STATEMENT_TYPE_ALTER: "ALTER", duckdb.STATEMENT_TYPE_DROP: "DROP",
		duckdb.STATEMENT_TYPE_COPY: "COPY", duckdb.STATEMENT_TYPE_ATTACH: "ATTACH",
		duckdb.STATEMENT_TYPE_DETACH: "DETACH", duckdb.STATEMENT_TYPE_SET: "SET",
		duckdb.STATEMENT_TYPE_VARIABLE_SET: "SET", duckdb.STATEMENT_TYPE_PRAGMA: "PRAGMA",
		duckdb.STATEMENT_TYPE_CALL: "CALL", duckdb.STATEMENT_TYPE_EXPORT: "EXPORT",
		duckdb.STATEMENT_TYPE_LOAD: "LOAD", duckdb.STATEMENT_TYPE_TRANSACTION: "transaction",
		duckdb.STATEMENT_TYPE_MULTI: "multi-statement", duckdb.STATEMENT_TYPE_VACUUM: "VACUUM",
		duckdb.STATEMENT_TYPE_CREATE_FUNC: "CREATE FUNCTION", duckdb.STATEMENT_TYPE_EXTENSION: "extension",
		duckdb.STATEMENT_TYPE_PREPARE: "PREPARE", duckdb.STATEMENT_TYPE_EXECUTE: "EXECUTE",
		duckdb.STATEMENT_TYPE_ANALYZE: "ANALYZE",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}
