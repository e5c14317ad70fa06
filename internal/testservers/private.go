package testservers

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Private is a server of one test's own, which the test may stop and start again (on
// the same port, with its data) to see what a store does during an outage. It is
// stopped and its directory removed when the test ends.
type Private struct {
	kind string
	addr string
	who  runAs
	dir  string
	port int
	run  func(runAs, string, int) (*process, error)

	mu sync.Mutex
	p  *process // nil while stopped
}

// PrivatePostgreSQL starts a PostgreSQL server for t alone. Its DSN names the database
// "postgres".
func PrivatePostgreSQL(t testing.TB) *Private {
	t.Helper()
	return private(t, "postgresql", filepath.Join(PostgreSQLBin, "postgres"), "postgresql", initPostgreSQL, runPostgreSQL)
}

// PrivateClickHouse starts a ClickHouse server for t alone.
func PrivateClickHouse(t testing.TB) *Private {
	t.Helper()
	return private(t, "clickhouse", ClickHouseServer, "clickhouse-server", initClickHouse, runClickHouse)
}

func private(t testing.TB, kind, binary, pkg string, initFn func() (runAs, string, int, error),
	run func(runAs, string, int) (*process, error)) *Private {
	t.Helper()
	if msg, fatal := absent(kind, binary, pkg, os.Getenv("CI") != ""); msg != "" {
		if fatal {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	who, dir, port, err := initFn()
	if err != nil {
		t.Fatalf("preparing %s: %v", kind, err)
	}
	s := &Private{kind: kind, who: who, dir: dir, port: port, run: run}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.p != nil {
			if err := s.p.stop(); err != nil {
				t.Errorf("stopping %s: %v", kind, err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s's directory: %v", kind, err)
		}
	})
	s.Start(t)
	return s
}

// Addr is the server's host:port.
func (s *Private) Addr() string { return s.addr }

// DSN is the PostgreSQL connection string of a private PostgreSQL server.
func (s *Private) DSN() string { return pgDSN(s.addr, "postgres") }

// Start starts the server, and returns once it takes connections.
func (s *Private) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return
	}
	began := time.Now()
	p, err := s.run(s.who, s.dir, s.port)
	if err != nil {
		t.Fatalf("starting %s: %v", s.kind, err)
	}
	// The directory outlives this process: Stop keeps it for the next Start.
	p.keepDir = true
	s.p, s.addr = p, p.addr
	t.Logf("testservers: private %s ready on %s in %v", s.kind, s.addr, time.Since(began).Round(time.Millisecond))
}

// Stop stops the server cleanly, keeping its data for Start.
func (s *Private) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	if err := s.p.stop(); err != nil {
		t.Fatalf("stopping %s: %v", s.kind, err)
	}
	s.p = nil
}
