package testservers

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// TestPostgreSQL checks that each call hands out a distinct, empty, writable database
// on a server not running as root.
func TestPostgreSQL(t *testing.T) {
	a, b := PostgreSQL(t), PostgreSQL(t)
	if a == b {
		t.Fatalf("two calls returned one database: %s", a)
	}
	for _, dsn := range []string{a, b} {
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.WithoutCancel(t.Context()))
		var n int
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: %d tables (%v), want an empty database", dsn, n, err)
		}
		if _, err := conn.Exec(t.Context(), "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
			t.Fatalf("%s: writing: %v", dsn, err)
		}
		var super string
		if err := conn.QueryRow(t.Context(), "SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&super); err != nil || super != "postgres" {
			t.Fatalf("session user = %q (%v), want postgres", super, err)
		}
	}
	if os.Geteuid() == 0 {
		p := registry.servers["postgresql"]
		if p.cmd.SysProcAttr.Credential == nil || p.cmd.SysProcAttr.Credential.Uid == 0 {
			t.Error("postgres runs as root")
		}
	}
}

// TestClickHouse checks that each call hands out a distinct, empty database where a
// MergeTree table can be written and read back.
func TestClickHouse(t *testing.T) {
	a, b := ClickHouse(t), ClickHouse(t)
	if a.Database == b.Database || a.Addr != b.Addr {
		t.Fatalf("two calls returned %+v and %+v, want two databases on one server", a, b)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{a.Addr}, Auth: clickhouse.Auth{Database: a.Database}, ReadTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var version string
	if err := conn.QueryRow(t.Context(), "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse %s", version)
	if err := conn.Exec(t.Context(), "CREATE TABLE t (k UInt64, v String) ENGINE = MergeTree ORDER BY k"); err != nil {
		t.Fatal(err)
	}
	// 18.16 takes inserts through the batch API (an INSERT ... VALUES sent with Exec
	// waits for data blocks that never come).
	batch, err := conn.PrepareBatch(t.Context(), "INSERT INTO t (k, v)")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(batch.Append(uint64(1), "a"), batch.Append(uint64(2), "b"), batch.Send()); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(t.Context(), "SELECT count() FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count = %d (%v), want 2", n, err)
	}
	if err := conn.QueryRow(t.Context(), "SELECT count() FROM system.tables WHERE database = ?", b.Database).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s has %d tables (%v), want none", b.Database, n, err)
	}
}

func TestAbsentBinary(t *testing.T) {
	for _, tc := range []struct {
		name      string
		binary    string
		ci        bool
		wantMsg   bool
		wantFatal bool
	}{
		{"installed", "/bin/sh", true, false, false},
		{"missing outside CI", "/nonexistent/postgres", false, true, false},
		{"missing in CI", "/nonexistent/postgres", true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, fatal := absent("postgresql", tc.binary, "postgresql", tc.ci)
			if (msg != "") != tc.wantMsg || fatal != tc.wantFatal {
				t.Fatalf("absent = %q, %v; want a message %v, fatal %v", msg, fatal, tc.wantMsg, tc.wantFatal)
			}
			if tc.wantMsg && !strings.Contains(msg, "apt-get install -y postgresql") {
				t.Errorf("message %q does not name the install command", msg)
			}
		})
	}
}

// TestPrivateRestart checks that private servers stop (refusing connections) and start
// again on the same address with their data.
func TestPrivateRestart(t *testing.T) {
	pg := PrivatePostgreSQL(t)
	ch := PrivateClickHouse(t)
	conn, err := pgx.Connect(t.Context(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	chConn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, ReadTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer chConn.Close()
	if err := chConn.Exec(t.Context(), "CREATE TABLE kept (x UInt8) ENGINE = TinyLog"); err != nil {
		t.Fatal(err)
	}

	addrs := []string{pg.Addr(), ch.Addr()}
	pg.Stop(t)
	ch.Stop(t)
	if c, err := pgx.Connect(t.Context(), pg.DSN()); err == nil {
		c.Close(t.Context())
		t.Fatal("a stopped PostgreSQL took a connection")
	}
	if err := chConn.Ping(t.Context()); err == nil {
		t.Fatal("a stopped ClickHouse answered a ping")
	}
	pg.Start(t)
	ch.Start(t)
	if got := []string{pg.Addr(), ch.Addr()}; got[0] != addrs[0] || got[1] != addrs[1] {
		t.Fatalf("restarted on %v, want %v", got, addrs)
	}
	conn, err = pgx.Connect(t.Context(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	var x int
	if err := conn.QueryRow(t.Context(), "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after a restart: x = %d (%v), want 42", x, err)
	}
	var n uint64
	if err := chConn.QueryRow(t.Context(), "SELECT count() FROM system.tables WHERE name = 'kept'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after a restart ClickHouse has %d tables named kept (%v), want 1", n, err)
	}
}
