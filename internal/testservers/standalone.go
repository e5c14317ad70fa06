package testservers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Server is a PostgreSQL or ClickHouse server started by a program rather than a test
// (the benchmarks under bench/ run as programs, with flags, and have no testing.TB):
// the same private, ephemeral server the tests get, in its own temporary directory on a
// free loopback port, run from the Debian packages as their system user when the
// program runs as root. The caller stops it with Stop, which removes its directory.
type Server struct {
	p *process
}

// StartPostgreSQL starts a PostgreSQL server whose DSN names the database "postgres",
// owned by the superuser "postgres" (trust authentication over loopback). It runs with
// the tests' settings (durability off: fsync, synchronous_commit, full_page_writes;
// shared_buffers 32MB) unless settings ("name=value", e.g. "fsync=on") say otherwise.
func StartPostgreSQL(settings ...string) (*Server, error) {
	if err := installed("postgresql", filepath.Join(PostgreSQLBin, "postgres"), "postgresql"); err != nil {
		return nil, err
	}
	who, dir, port, err := initPostgreSQL()
	if err != nil {
		return nil, fmt.Errorf("preparing postgresql: %w", err)
	}
	p, err := startPostgreSQLProcess(who, dir, port, settings...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("starting postgresql: %w", err), os.RemoveAll(dir))
	}
	return &Server{p: p}, nil
}

// StartClickHouse starts a ClickHouse server; its user "default" has no password.
func StartClickHouse() (*Server, error) {
	if err := installed("clickhouse", ClickHouseServer, "clickhouse-server"); err != nil {
		return nil, err
	}
	p, err := startClickHouse()
	if err != nil {
		return nil, fmt.Errorf("starting clickhouse: %w", err)
	}
	return &Server{p: p}, nil
}

// installed returns an error naming the package to install when binary is missing.
func installed(kind, binary, pkg string) error {
	if msg, _ := absent(kind, binary, pkg, false); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// Addr is the server's host:port (ClickHouse's native protocol, or PostgreSQL's).
func (s *Server) Addr() string { return s.p.addr }

// DSN is the connection string of a PostgreSQL server's "postgres" database.
func (s *Server) DSN() string { return pgDSN(s.p.addr, "postgres") }

// PID is the server's main process. It leads its own process group, which holds the
// server's other processes too (PostgreSQL's backends).
func (s *Server) PID() int { return s.p.cmd.Process.Pid }

// Dir is the server's temporary directory, with its data and log.
func (s *Server) Dir() string { return s.p.dir }

// Stop stops the server and removes its directory.
func (s *Server) Stop() error {
	if err := s.p.stop(); err != nil {
		return fmt.Errorf("stopping %s: %w", s.p.name, err)
	}
	return nil
}
