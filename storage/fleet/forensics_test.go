package fleet_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/forensics"
	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/fleet"
)

// An export read from ClickHouse + PostgreSQL through forensics.StoreSource is the same
// as the export of the agent's own segment directory, across several store pages and
// segment rotations, and its views find no break.
func TestForensicExportFromFleetStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := time.Date(2026, 11, 25, 6, 0, 0, 123456789, time.UTC)
	l, err := audit.Open(dir, audit.Options{MaxSegmentBytes: 64 << 10, Now: func() time.Time { return base }})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500 // more than two pages of the store source
	for i := 0; i < n; i++ {
		uid := int64(65534)
		ev := chain.Event{Type: chain.TypeFile, Rule: "shadow", Severity: chain.SeverityCritical, Source: "fanotify",
			Path: "/etc/shadow", Op: "read", PID: int32(1000 + i), UID: &uid, User: "nobody",
			Cmdline: fmt.Sprintf("cat /etc/shadow # it's \"%d\"\n\\", i)}
		if _, err := l.Append(chain.Payload{Time: base.Add(time.Duration(i) * time.Millisecond), Kind: chain.KindEvent, Event: &ev}); err != nil {
			t.Fatal(err)
		}
	}
	ch := testservers.ClickHouse(t)
	store, err := fleet.Open(ctx, fleet.Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: testservers.PostgreSQL(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RegisterHost(ctx, storage.Host{HostID: "web-01", Hostname: "web-01", FirstSeen: base, LastSeen: base}); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); ; {
		es, err := l.ReadFrom(seq, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		if err := store.AppendEntries(ctx, "web-01", es); err != nil {
			t.Fatal(err)
		}
		seq = es[len(es)-1].Seq + 1
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	export := func(src forensics.Source) string {
		t.Helper()
		defer src.Close()
		var b bytes.Buffer
		opts := forensics.Options{Now: func() time.Time { return base }, Version: "test"}
		if _, err := forensics.Export(ctx, src, &b, opts); err != nil {
			t.Fatalf("export from %s: %v", src.Describe(), err)
		}
		return b.String()
	}
	body := func(script string) string {
		i := strings.Index(script, "INSERT INTO entries")
		if i < 0 {
			t.Fatal("no entries exported")
		}
		return script[i:]
	}
	dirSrc, err := forensics.NewDirSource(dir, "web-01")
	if err != nil {
		t.Fatal(err)
	}
	fromDir := export(dirSrc)
	fromStore := export(forensics.NewStoreSource(store, "clickhouse+postgresql"))
	if body(fromDir) != body(fromStore) {
		t.Fatal("the fleet store's export differs from the segment directory's")
	}

	// The store's script, with the collector's stored head in it, loads as the duckdb
	// shell would load it and verifies.
	db, err := forensics.OpenDuckDB("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := forensics.LoadScript(ctx, db, strings.NewReader(fromStore)); err != nil {
		t.Fatal(err)
	}
	var breaks, entries int
	if err := db.QueryRow("SELECT (SELECT count(*) FROM chain_breaks), (SELECT count(*) FROM entries)").Scan(&breaks, &entries); err != nil {
		t.Fatal(err)
	}
	if breaks != 0 || entries < n {
		t.Fatalf("%d breaks over %d entries; want none over at least %d", breaks, entries, n)
	}
}
