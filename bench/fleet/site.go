package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/bench/internal/benchnet"
	"github.com/tripwire-project/tripwire/internal/testservers"
)

// token is the collector API's bearer token in the benchmark.
const token = "bench-token-0123456789"

// site is the benchmark's world: ClickHouse and PostgreSQL servers of its own, a PKI
// made by tripwire-collector, and at most one collector process at a time.
type site struct {
	dir    string
	bin    string
	pg, ch *testservers.Server

	coll                          *exec.Cmd
	grpcAddr, httpAddr, debugAddr string
}

// newSite starts both servers (PostgreSQL with pgSettings over the test defaults) and
// makes a PKI.
func newSite(bin string, pgSettings []string) (*site, error) {
	dir, err := os.MkdirTemp("", "tripwire-bench-fleet-")
	if err != nil {
		return nil, err
	}
	s := &site{dir: dir, bin: bin}
	if s.pg, err = testservers.StartPostgreSQL(pgSettings...); err != nil {
		s.close()
		return nil, err
	}
	if s.ch, err = testservers.StartClickHouse(); err != nil {
		s.close()
		return nil, err
	}
	if out, err := exec.Command(filepath.Join(bin, "tripwire-collector"), "pki", "init", "--dir", s.pkiDir()).CombinedOutput(); err != nil {
		s.close()
		return nil, fmt.Errorf("tripwire-collector pki init: %v\n%s", err, out)
	}
	return s, nil
}

func (s *site) pkiDir() string { return filepath.Join(s.dir, "pki") }

// pgDSN is the DSN of a database of the site's PostgreSQL.
func (s *site) pgDSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", s.pg.Addr(), db)
}

// createDatabase makes a PostgreSQL database (ClickHouse's the store creates itself).
func (s *site) createDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.pg.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("creating PostgreSQL database %s: %w", name, err)
	}
	return nil
}

// startCollector runs tripwire-collector serve on the fleet store in databases db of
// both servers, with the profile listener on, and waits for /healthz.
func (s *site) startCollector(db string) error {
	if s.coll != nil {
		return errors.New("a collector is running")
	}
	s.grpcAddr, s.httpAddr, s.debugAddr = benchnet.FreeAddr(), benchnet.FreeAddr(), benchnet.FreeAddr()
	cfg := filepath.Join(s.dir, "collector-"+db+".yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `listen: {grpc: %q, http: %q, debug: %q}
pki: {dir: pki}
storage:
  clickhouse: {addr: %q, database: %s}
  postgres: {dsn: %q}
api: {tokens: [%s]}
`, s.grpcAddr, s.httpAddr, s.debugAddr, s.ch.Addr(), db, s.pgDSN(db), token), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(s.collectorLog(db))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.bin, "tripwire-collector"), "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	logf.Close()
	s.coll = cmd
	if err := benchnet.WaitHTTP("http://"+s.httpAddr+"/healthz", 2*time.Minute); err != nil {
		log, _ := os.ReadFile(s.collectorLog(db))
		return fmt.Errorf("collector: %w\n%s", err, tail(string(log), 20))
	}
	return nil
}

func (s *site) collectorLog(db string) string { return filepath.Join(s.dir, "collector-"+db+".log") }

// stopCollector stops the collector (SIGINT, as an operator would).
func (s *site) stopCollector() {
	if s.coll == nil {
		return
	}
	_ = s.coll.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.coll.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.coll.Process.Kill()
		<-done
	}
	s.coll = nil
}

// close stops everything and removes the directory (unless keep).
func (s *site) close() {
	s.stopCollector()
	for _, srv := range []*testservers.Server{s.ch, s.pg} {
		if srv != nil {
			if err := srv.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "bench/fleet:", err)
			}
		}
	}
	os.RemoveAll(s.dir)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
