package testservers

import (
	"context"
	"os"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
)

// TestStandalone checks the servers a program starts: reachable, PostgreSQL with the
// settings asked for taking precedence over the tests' own, and their directories gone
// after Stop.
func TestStandalone(t *testing.T) {
	if msg, fatal := absent("postgresql", PostgreSQLBin+"/postgres", "postgresql", os.Getenv("CI") != ""); msg != "" {
		if fatal {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	pg, err := StartPostgreSQL("fsync=on", "synchronous_commit=on")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	for setting, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "off"} {
		var got string
		if err := conn.QueryRow(t.Context(), "SHOW "+setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", setting, got, err, want)
		}
	}
	conn.Close(context.WithoutCancel(t.Context()))
	if pg.PID() <= 0 {
		t.Errorf("PID = %d", pg.PID())
	}

	ch, err := StartClickHouse()
	if err != nil {
		t.Fatal(err)
	}
	c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(t.Context()); err != nil {
		t.Errorf("ClickHouse ping: %v", err)
	}
	c.Close()

	for _, s := range []*Server{pg, ch} {
		dir := s.Dir()
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Stop (%v)", dir, err)
		}
	}
}
