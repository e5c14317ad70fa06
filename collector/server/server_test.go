package server

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/collector/config"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/fleet"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// run serves s until the stop it returns is called, or the test ends. stop waits for Run
// to return, and fails the test if Run failed.
func run(t *testing.T, s *Server) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestNewOpensFleetStore checks that a config naming ClickHouse and PostgreSQL gets the
// production store, migrated and usable, and that the server runs and stops on it.
func TestNewOpensFleetStore(t *testing.T) {
	ch, dsn := testservers.ClickHouse(t), testservers.PostgreSQL(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, pki.InitOptions{ServerNames: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Listen: config.Listen{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0"},
		PKI:    config.PKI{Dir: dir},
		Storage: config.Storage{
			ClickHouse: &config.ClickHouse{Addr: ch.Addr, Database: ch.Database},
			Postgres:   &config.Postgres{DSN: dsn},
		},
		API: config.API{Tokens: []string{"change-me-now"}},
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, ok := s.store.(*fleet.Store); !ok {
		t.Fatalf("store is a %T, want *fleet.Store", s.store)
	}
	h := storage.Host{HostID: "h-1", Hostname: "web-1", OS: "linux", Arch: "amd64", Watchers: "[]", LastSeen: time.Now()}
	if err := s.store.RegisterHost(t.Context(), h); err != nil {
		t.Fatalf("RegisterHost: %v", err)
	}
	run(t, s)()
	// The host registered through the server is in PostgreSQL for the next collector.
	again, err := OpenStore(t.Context(), cfg.Storage, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	hs, err := again.Hosts(t.Context())
	if err != nil || len(hs) != 1 || hs[0].Hostname != "web-1" {
		t.Fatalf("Hosts = %+v, %v; want web-1", hs, err)
	}
}
