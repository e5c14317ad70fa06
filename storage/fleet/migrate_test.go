package fleet

import (
	"io/fs"
	"testing"

	pgschema "github.com/tripwire-project/tripwire/sql/postgres"
)

// 0009_alerts_lean_index leaves alerts with its primary key as its only constraint
// (host events' NULL seq aside, the alert id is unique per (host_id, seq)), and runs
// again without harm.
func TestAlertsLeanIndexMigration(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	sql, err := fs.ReadFile(pgschema.Migrations, "0009_alerts_lean_index.sql")
	if err != nil {
		t.Fatal(err)
	}
	pgExec(t, s, string(sql))
	if n := pgCount(t, s, `SELECT count(*) FROM pg_constraint WHERE conrelid = 'alerts'::regclass AND contype <> 'c'`); n != 1 {
		t.Fatalf("alerts has %d key constraints, want its primary key alone", n)
	}
}
