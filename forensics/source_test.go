package forensics

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/proto/chain"
	storeduckdb "github.com/tripwire-project/tripwire/storage/duckdb"
)

// storeFromChain ships the chain in dir into a new embedded store file, as the
// collector would: the batch entries the agent's reader gives, through AppendEntries.
func storeFromChain(t *testing.T, dir, hostID string) string {
	t.Helper()
	l, err := audit.Open(dir, audit.Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tripwire.duckdb")
	st, err := storeduckdb.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); ; {
		es, err := l.ReadFrom(seq, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		if err := st.AppendEntries(context.Background(), hostID, es); err != nil {
			t.Fatal(err)
		}
		seq = es[len(es)-1].Seq + 1
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// body is the part of a SQL export that depends on the chain only: the rows and what
// the exporter saw of each chain.
func body(t *testing.T, script string) string {
	t.Helper()
	i := strings.Index(script, "INSERT INTO entries")
	if i < 0 {
		t.Fatal("no entries in the export")
	}
	return script[i:]
}

// TestDuckDBSourceMatchesDirSource: the collector's store gives the same export as the
// segment directory for the same chain, and the collector's stored head verifies.
func TestDuckDBSourceMatchesDirSource(t *testing.T) {
	dir := t.TempDir()
	ps, _ := incidentPayloads(incident[0])
	writeChain(t, dir, 4<<10, ps...)
	path := storeFromChain(t, dir, "web-01")

	fromDir := exportString(t, dirSource(t, dir, "web-01"), Options{})
	src, err := NewDuckDBSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fromStore := exportString(t, src, Options{})
	if body(t, fromDir) != body(t, fromStore) {
		t.Fatalf("the store's export differs from the directory's")
	}
	for _, f := range []Filter{{Type: "PROCESS"}, {Rule: "shadow-read"}, {From: t0.Add(time.Minute), To: t0.Add(time.Minute + 3*time.Second)}} {
		a := exportString(t, dirSource(t, dir, "web-01"), Options{Filter: f})
		b := exportString(t, src, Options{Filter: f})
		if body(t, a) != body(t, b) {
			t.Fatalf("filter %+v: the store's export differs from the directory's", f)
		}
	}
	db := loadScript(t, fromStore)
	if got := rows(t, db, "SELECT * FROM chain_breaks"); len(got) != 0 {
		t.Fatalf("chain_breaks: %q", got)
	}
	head := rows(t, db, "SELECT h.head_seq = x.last_seq AND h.head_hash = x.last_hash FROM hosts h JOIN export_hosts x USING (host_id)")
	if !slices.Equal(head, []string{"true"}) {
		t.Fatalf("the collector's stored head should be the chain's last entry: %q", head)
	}
	if _, err := NewDuckDBSource(filepath.Join(t.TempDir(), "absent.duckdb")); err == nil {
		t.Fatal("opening an absent store should fail")
	}
}

// TestDuckDBSourceLockedByCollector: while the collector holds the file, the error says
// to stop it.
func TestDuckDBSourceLockedByCollector(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tripwire.duckdb")
	st, err := storeduckdb.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = NewDuckDBSource(path)
	if err == nil {
		t.Fatal("a read-only open succeeded while the store holds the file: the lock this error message relies on is gone")
	}
	if !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("error should tell to stop the collector: %v", err)
	}
}

// TestFilteredExport: entries outside the filter are stubs, so that nothing filtered out
// reads as missing, and only the selected payloads are exported.
func TestFilteredExport(t *testing.T) {
	dir := t.TempDir()
	ps, _ := incidentPayloads(incident[1])
	writeChain(t, dir, 0, ps...)
	steps := stepSeqs(t, dir, incident[1])
	start, stop := uint64(1), uint64(len(ps)) // the agent's notices: no anchors in one segment
	cases := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"type", Filter{Type: chain.TypeProcess}, []uint64{start, steps["shell"], steps["nc"], stop}},
		{"rule", Filter{Rule: "shadow-read"}, []uint64{start, steps["shadow"], stop}},
		{"time", Filter{From: incident[1].at, To: incident[1].at.Add(3 * time.Second)}, []uint64{steps["decoy"], steps["shell"]}},
		{"type and time", Filter{Type: chain.TypeNetwork, From: incident[1].at}, []uint64{steps["decoy"], stop}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			script := exportString(t, dirSource(t, dir, "db-01"), Options{Filter: c.f})
			db := loadScript(t, script)
			if got := rows(t, db, "SELECT * FROM chain_breaks"); len(got) != 0 {
				t.Fatalf("a filtered export must not read as broken: %q", got)
			}
			var want []string
			for _, s := range c.want {
				want = append(want, formatUint(s))
			}
			if got := rows(t, db, "SELECT seq FROM entries WHERE in_filter ORDER BY seq"); !slices.Equal(got, want) {
				t.Fatalf("exported in full: %q, want %q", got, want)
			}
			if got := rows(t, db, "SELECT count(*) FROM entries WHERE NOT in_filter AND (payload IS NOT NULL OR ts IS NOT NULL)"); got[0] != "0" {
				t.Fatal("stubs must carry no payload")
			}
			// Deleting a stub is still a gap.
			lines := strings.Split(script, "\n")
			for i, l := range lines {
				if strings.HasPrefix(l, "('db-01', 2, 2, NULL") {
					lines = slices.Delete(lines, i, i+1)
					break
				}
			}
			if got := breaks(t, strings.Join(lines, "\n")); len(got) == 0 || got[0] != "3|3|gap" {
				t.Fatalf("a deleted stub should be a gap at seq 3: %q", got)
			}
		})
	}
	var buf strings.Builder
	_, err := Export(context.Background(), dirSource(t, dir, "db-01"), &buf, Options{Filter: Filter{Host: "nope"}})
	if !errors.Is(err, ErrNoHost) {
		t.Fatalf("unknown host: %v", err)
	}
}
