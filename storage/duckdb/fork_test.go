package duckdb

import (
	"io/fs"
	"testing"

	schema "github.com/tripwire-project/tripwire/sql/duckdb"
)

// 0006_forks can run again on a migrated database without harm: its columns are added
// only if missing.
func TestForkMigrationRunsAgain(t *testing.T) {
	s := openFile(t, "")
	defer s.Close()
	sql, err := fs.ReadFile(schema.Migrations, "0006_forks.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(t.Context(), string(sql)); err != nil {
		t.Fatalf("running 0006_forks.sql again: %v", err)
	}
	var n int
	if err := s.db.QueryRowContext(t.Context(), `SELECT count(*) FROM duckdb_columns()
		WHERE table_name = 'hosts' AND column_name IN ('fork_of', 'fork_seq')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("hosts has %d fork columns (%v), want 2", n, err)
	}
}
