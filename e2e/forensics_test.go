package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/forensics"
)

// A real agent's chain, and the collector's copy of it, exported by the real
// tripwire-forensics binary, load as the duckdb shell would load them; every hash
// recomputes in SQL and the reads by nobody are there with their PIDs.
func TestForensicExportOfRealChain(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("web-07", "CRITICAL")
	agent := e.startAgent(cfg, hz)
	var pids []int
	for range 3 {
		pids = append(pids, asNobody(t, "cat", decoy))
	}
	waitFor(t, 5*time.Second, "3 alerts stored", func() (bool, string) {
		alerts, err := e.alerts("host=web-07")
		return err == nil && len(alerts) == 3, fmt.Sprintf("%d %v", len(alerts), err)
	})
	agent.stop(syscall.SIGTERM)
	e.coll.stop(syscall.SIGTERM)

	for name, args := range map[string][]string{
		"segment directory": {"export", "--dir", filepath.Join(e.dir, "audit-web-07"), "--host", "web-07"},
		"collector store":   {"export", "--duckdb", filepath.Join(e.dir, "data", "tripwire.duckdb"), "--host", "web-07"},
	} {
		t.Run(name, func(t *testing.T) {
			db := loadExport(t, args...)
			var breaks, recomputed, total int
			if err := db.QueryRow(`SELECT (SELECT count(*) FROM chain_breaks),
				(SELECT count(*) FROM entries WHERE sha256(prev_hash || payload) = hash),
				(SELECT count(*) FROM entries)`).Scan(&breaks, &recomputed, &total); err != nil {
				t.Fatal(err)
			}
			if breaks != 0 || recomputed != total || total < 4 { // agent start + 3 reads (+ the stop, in the directory)
				t.Fatalf("%d breaks, %d of %d hashes recompute in SQL", breaks, recomputed, total)
			}
			rows, err := db.Query(`SELECT CAST(json_extract(payload, '$.event.pid') AS INTEGER) FROM entries
				WHERE json_extract_string(payload, '$.event.user') = 'nobody' ORDER BY seq`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var pid int
				rows.Scan(&pid)
				got = append(got, fmt.Sprint(pid))
			}
			if want := strings.Trim(fmt.Sprint(pids), "[]"); strings.Join(got, " ") != want {
				t.Fatalf("reads by nobody in the export: pids %v, want %s", got, want)
			}
		})
	}
}

// loadExport runs `tripwire-forensics` with args (an export) and --out, and loads the
// SQL script it wrote into a fresh DuckDB statement by statement, as the duckdb shell
// would read it from a pipe. The database is closed when the test ends.
func loadExport(t *testing.T, args ...string) *sql.DB {
	t.Helper()
	out := filepath.Join(t.TempDir(), "case.sql")
	if msg, err := run(t, "tripwire-forensics", append(args, "--out", out)...); err != nil {
		t.Fatalf("export: %v\n%s", err, msg)
	}
	script, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer script.Close()
	db, err := forensics.OpenDuckDB("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := forensics.LoadScript(context.Background(), db, script); err != nil {
		t.Fatalf("loading the export as the shell would: %v", err)
	}
	return db
}
