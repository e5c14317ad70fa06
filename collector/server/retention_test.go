package server

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/collector/config"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// TestRetentionDropsOldHistory: a collector on the fleet store with retention_days set
// drops the months older than that at start, and keeps the recent ones.
func TestRetentionDropsOldHistory(t *testing.T) {
	ch, dsn := testservers.ClickHouse(t), testservers.PostgreSQL(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, pki.InitOptions{ServerNames: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Listen: config.Listen{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0"},
		PKI:    config.PKI{Dir: dir},
		Storage: config.Storage{
			ClickHouse:    &config.ClickHouse{Addr: ch.Addr, Database: ch.Database},
			Postgres:      &config.Postgres{DSN: dsn},
			RetentionDays: 30,
		},
		API: config.API{Tokens: []string{"change-me-now"}},
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := t.Context()
	if err := s.store.RegisterHost(ctx, storage.Host{HostID: "h-old", Hostname: "old", Watchers: "[]", LastSeen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c := storetest.NewChain()
	old, recent := time.Now().AddDate(-1, 0, 0), time.Now().Add(-time.Hour)
	ev := chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityInfo, Source: "fanotify", Path: "/x", Op: "read", Count: 1}
	if err := s.store.AppendEntries(ctx, "h-old", []batch.Entry{c.Event(old, ev), c.Event(recent, ev)}); err != nil {
		t.Fatal(err)
	}
	defer run(t, s)()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := s.store.Audit(ctx, storage.AuditFilter{Host: "h-old"})
		if err == nil && len(got) == 1 && got[0].Seq == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s the history holds %+v (err %v), want only the recent entry (seq 2)", got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
