package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pgschema "github.com/tripwire-project/tripwire/sql/postgres"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/testservers"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// writeConfig writes a collector.yaml with the given storage section and a PKI.
func writeConfig(t *testing.T, storage string) string {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Init(filepath.Join(dir, "pki"), pki.InitOptions{ServerNames: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "collector.yaml")
	cfg := "listen: {grpc: 127.0.0.1:0, http: 127.0.0.1:0}\npki: {dir: pki}\napi: {tokens: [change-me-now]}\nstorage:\n" + storage
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMigrateFleet(t *testing.T) {
	ch, dsn := testservers.ClickHouse(t), testservers.PostgreSQL(t)
	path := writeConfig(t, fmt.Sprintf("  clickhouse: {addr: %q, database: %s}\n  postgres: {dsn: %q}\n", ch.Addr, ch.Database, dsn))
	for range 2 { // applied, then already up to date
		var stdout, stderr bytes.Buffer
		if err := run([]string{"migrate", "--config", path}, &stdout, &stderr); err != nil {
			t.Fatalf("migrate: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "up to date") {
			t.Errorf("migrate printed %q", stdout.String())
		}
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	var n int
	files, _ := fs.Glob(pgschema.Migrations, "*.sql")
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(files) {
		t.Fatalf("PostgreSQL schema_migrations: %d rows (%v), want %d (one per migration) after two runs", n, err, len(files))
	}
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM alerts").Scan(&n); err != nil {
		t.Fatalf("the alerts table is missing after migrate: %v", err)
	}
}

func TestMigrateUnreachable(t *testing.T) {
	path := writeConfig(t, "  clickhouse: {addr: \"127.0.0.1:1\", database: tripwire}\n  postgres: {dsn: \"postgres://tripwire@127.0.0.1:1/tripwire?connect_timeout=5\"}\n")
	var stdout, stderr bytes.Buffer
	err := run([]string{"migrate", "--config", path}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("migrate with no server: got %v, want an error naming PostgreSQL", err)
	}
}

func TestMigrateDuckDB(t *testing.T) {
	path := writeConfig(t, "  duckdb: data/t.duckdb\n")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"migrate", "--config", path}, &stdout, &stderr); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "data", "t.duckdb")); err != nil {
		t.Errorf("the DuckDB file was not created: %v", err)
	}
}
