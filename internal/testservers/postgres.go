package testservers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgreSQLBin is where Debian's postgresql package puts the server binaries.
const PostgreSQLBin = "/usr/lib/postgresql/15/bin"

// PostgreSQL returns the DSN of a new, empty database on the package's PostgreSQL
// server, starting the server on first use. The database belongs to the superuser
// "postgres", reached over loopback TCP without a password.
func PostgreSQL(t testing.TB) string {
	t.Helper()
	p := shared(t, "postgresql", filepath.Join(PostgreSQLBin, "postgres"), "postgresql", startPostgreSQL)
	name := nextDBName()
	conn, err := pgx.Connect(t.Context(), pgDSN(p.addr, "postgres"))
	if err != nil {
		t.Fatalf("connecting to the test PostgreSQL: %v", err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	return pgDSN(p.addr, name)
}

func pgDSN(addr, db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", addr, db)
}

// startPostgreSQL runs initdb in a new directory and the server on a free port.
func startPostgreSQL() (*process, error) {
	who, dir, port, err := initPostgreSQL()
	if err != nil {
		return nil, err
	}
	return runPostgreSQL(who, dir, port)
}

// initPostgreSQL makes a data directory with initdb and picks a free port.
func initPostgreSQL() (who runAs, dir string, port int, err error) {
	if who, err = account("postgres"); err != nil {
		return who, "", 0, err
	}
	if dir, err = who.mkdir("tripwire-pg-*"); err != nil {
		return who, "", 0, err
	}
	initdb := exec.Command(filepath.Join(PostgreSQLBin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions")
	if who.root {
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: who.uid, Gid: who.gid}}
	}
	if out, err := initdb.CombinedOutput(); err != nil {
		return who, "", 0, errors.Join(fmt.Errorf("initdb: %w\n%s", err, out), os.RemoveAll(dir))
	}
	if port, err = freePort(); err != nil {
		return who, "", 0, errors.Join(err, os.RemoveAll(dir))
	}
	return who, dir, port, nil
}

// runPostgreSQL starts the server of an initialised directory and waits until it takes
// connections. Durability settings are off: a test database need not survive a crash
// of the machine (a clean stop keeps everything).
func runPostgreSQL(who runAs, dir string, port int) (*process, error) {
	return startPostgreSQLProcess(who, dir, port)
}

// startPostgreSQLProcess is runPostgreSQL with more server settings ("name=value"),
// which take precedence over the test defaults (a later -c wins).
func startPostgreSQLProcess(who runAs, dir string, port int, settings ...string) (*process, error) {
	args := []string{"-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB", "-c", "logging_collector=off"}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	cmd := exec.Command(filepath.Join(PostgreSQLBin, "postgres"), args...)
	// SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to leave.
	p, err := launch("postgresql", cmd, who, dir, filepath.Join(dir, "postgres.log"), syscall.SIGINT, 20*time.Second)
	if err != nil {
		return nil, err
	}
	p.addr = "127.0.0.1:" + strconv.Itoa(port)
	err = p.waitReady(func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, pgDSN(p.addr, "postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		return nil, errorsJoinStop(err, p)
	}
	return p, nil
}

// errorsJoinStop stops a server that failed to become ready and reports both.
func errorsJoinStop(err error, p *process) error {
	if stopErr := p.stop(); stopErr != nil {
		return fmt.Errorf("%w (and stopping it: %v)", err, stopErr)
	}
	return err
}
