package forensics

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/storage"
	storeduckdb "github.com/tripwire-project/tripwire/storage/duckdb"
)

// TestForkExportedAsFork: a fork the collector keeps (ADR 0014) comes out of every
// export format under its own id with its host's name, and says what it is a fork of
// and from which seq, in hosts and in the events view; the host's own chain says
// nothing of the kind.
func TestForkExportedAsFork(t *testing.T) {
	chainDir := t.TempDir()
	writeChain(t, chainDir, 0, fileEvent(0), fileEvent(1), fileEvent(2))
	const hostID, forkID = "0b1c2d3e-0000-4000-8000-000000000001", "fork-0b1c2d3e-3"
	storePath := filepath.Join(t.TempDir(), "tripwire.duckdb")
	st, err := storeduckdb.Open(storePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, h := range []storage.Host{
		{HostID: hostID, Hostname: "web-01", LastSeen: t0},
		{HostID: forkID, Hostname: "web-01", LastSeen: t0, ForkOf: hostID, ForkSeq: 3},
	} {
		if err := st.RegisterHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		l, err := audit.Open(chainDir, audit.Options{Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		es, err := l.ReadFrom(1, 100)
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AppendEntries(ctx, h.HostID, es); err != nil {
			t.Fatal(err)
		}
	}
	src := NewStoreSource(st, "test store")
	checkForkExport(t, "store", src, hostID, forkID)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	// The collector's embedded store file, read directly, says the same.
	dsrc, err := NewDuckDBSource(storePath)
	if err != nil {
		t.Fatal(err)
	}
	defer dsrc.Close()
	checkForkExport(t, "duckdb-file", dsrc, hostID, forkID)
}

// checkForkExport exports src (name names the subtests), holding host hostID and its fork forkID, in every
// format, loads each export and checks what it says of the fork.
func checkForkExport(t *testing.T, name string, src Source, hostID, forkID string) {
	ctx := context.Background()
	for _, f := range []Format{FormatSQL, FormatNDJSON, FormatParquet} {
		t.Run(name+"/"+string(f), func(t *testing.T) {
			out := exportFile(t, src, Options{Format: f, Filter: Filter{Host: "web-01"}})
			db, err := OpenDuckDB("")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := LoadExport(ctx, db, out); err != nil {
				t.Fatalf("load: %v", err)
			}
			want := []string{forkID + "|web-01|" + hostID + "|3", hostID + "|web-01|NULL|NULL"}
			if got := rows(t, db, "SELECT host_id, hostname, fork_of, fork_seq FROM hosts ORDER BY host_id DESC"); !slices.Equal(got, want) {
				t.Errorf("hosts = %q, want %q", got, want)
			}
			want = []string{forkID + "|" + hostID + "|3", hostID + "|NULL|3"}
			if got := rows(t, db, "SELECT host_id, fork_of, count(*) FROM events GROUP BY ALL ORDER BY host_id DESC"); !slices.Equal(got, want) {
				t.Errorf("events by chain = %q, want %q", got, want)
			}
			if b := rows(t, db, "SELECT * FROM chain_breaks"); len(b) != 0 {
				t.Errorf("chain_breaks = %q", b)
			}
			if f != FormatParquet {
				return
			}
			// A Parquet export made before forks were exported (no fork columns) loads,
			// with NULLs for them.
			old := filepath.Join(t.TempDir(), "old.parquet")
			lit := func(p string) string { return string(AppendSQLString(nil, []byte(p))) }
			if _, err := db.ExecContext(ctx, "COPY (SELECT * EXCLUDE (fork_of, fork_seq) FROM read_parquet("+lit(out)+")) TO "+lit(old)+" (FORMAT parquet)"); err != nil {
				t.Fatal(err)
			}
			oldDB, err := OpenDuckDB("")
			if err != nil {
				t.Fatal(err)
			}
			defer oldDB.Close()
			if err := LoadExport(ctx, oldDB, old); err != nil {
				t.Fatalf("loading a Parquet export without fork columns: %v", err)
			}
			if got := rows(t, oldDB, "SELECT count(*), count(fork_of) FROM hosts"); !slices.Equal(got, []string{"2|0"}) {
				t.Errorf("hosts of an old Parquet export: %q", got)
			}
		})
	}
}
