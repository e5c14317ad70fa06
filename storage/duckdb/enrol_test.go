package duckdb

import (
	"testing"
	"time"

	schema "github.com/tripwire-project/tripwire/sql/duckdb"
	"github.com/tripwire-project/tripwire/storage"
)

// The enrolment migration runs again without harm (IF NOT EXISTS), keeping what it
// made: every migration must, should one be applied twice.
func TestEnrolmentMigrationRunsAgain(t *testing.T) {
	s := openFile(t, "")
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Microsecond)
	tok := storage.JoinToken{ID: "0123456789abcdef", SecretSHA256: "x", Hostname: "h", HostID: "id", CreatedAt: now, CreatedBy: "token", ExpiresAt: now.Add(time.Hour)}
	if err := s.AddJoinToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	sql, err := schema.Migrations.ReadFile("0007_enrolment.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(t.Context(), string(sql)); err != nil {
		t.Fatalf("running 0007 again: %v", err)
	}
	if list, err := s.JoinTokens(t.Context()); err != nil || len(list) != 1 {
		t.Fatalf("JoinTokens after running 0007 again = %+v, %v", list, err)
	}
}
