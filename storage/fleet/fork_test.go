package fleet

import (
	"io/fs"
	"testing"

	pgschema "github.com/tripwire-project/tripwire/sql/postgres"
)

// 0006_forks can run again on a migrated database without harm: its columns are added
// only if missing.
func TestForkMigrationRunsAgain(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	sql, err := fs.ReadFile(pgschema.Migrations, "0006_forks.sql")
	if err != nil {
		t.Fatal(err)
	}
	pgExec(t, s, string(sql))
	if n := pgCount(t, s, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'hosts' AND column_name IN ('fork_of', 'fork_seq')`); n != 2 {
		t.Fatalf("hosts has %d fork columns, want 2", n)
	}
}
