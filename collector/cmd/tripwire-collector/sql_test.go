package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/collector/api"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage/duckdb"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

const testToken = "cli-test-token"

// apiServer serves the API over a DuckDB store holding two alerts of one host.
func apiServer(t *testing.T) string {
	t.Helper()
	store, err := duckdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.NewChain()
	ts := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	err = store.AppendEntries(context.Background(), "h1", []batch.Entry{
		c.Event(ts, chain.Event{Type: chain.TypeFile, Rule: "passwd", Severity: chain.SeverityCritical, Path: "/etc/passwd"}),
		c.Event(ts.Add(time.Second), chain.Event{Type: chain.TypeFile, Rule: "decoy", Severity: chain.SeverityWarn, Path: "/srv/decoy"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Options{Store: store, Tokens: []string{testToken}}))
	t.Cleanup(func() { srv.Close(); store.Close() })
	return srv.URL
}

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(args, &stdout, &stderr)
	return stdout.String(), err
}

func TestSQLTable(t *testing.T) {
	base := apiServer(t)
	out, err := runCmd(t, "sql", "--url", base, "--token", testToken,
		"SELECT seq, rule_name, ts FROM entries ORDER BY seq")
	if err != nil {
		t.Fatalf("sql: %v\n%s", err, out)
	}
	want := "seq  rule_name  ts\n" +
		"1    passwd     2026-11-25T10:00:00Z\n" +
		"2    decoy      2026-11-25T10:00:01Z\n" +
		"(2 rows)\n"
	if out != want {
		t.Errorf("sql printed\n%s\nwant\n%s", out, want)
	}
	out, err = runCmd(t, "sql", "--url", base, "--token", testToken, "--max-rows", "1", "SELECT seq FROM entries ORDER BY seq")
	if err != nil || !strings.HasSuffix(out, "(1 rows, truncated: raise --max-rows or narrow the query)\n") {
		t.Errorf("sql --max-rows 1: %v\n%s", err, out)
	}
}

func TestSQLNDJSON(t *testing.T) {
	base := apiServer(t)
	out, err := runCmd(t, "sql", "--url", base, "--token", testToken, "--format", "ndjson", "SELECT seq FROM entries ORDER BY seq")
	want := `{"columns":[{"name":"seq","type":"UBIGINT"}]}` + "\n[1]\n[2]\n" + `{"end":{"rows":2,"truncated":false}}` + "\n"
	if err != nil || out != want {
		t.Errorf("sql --format ndjson: %v\n%s\nwant\n%s", err, out, want)
	}
}

func TestSQLRefused(t *testing.T) {
	base := apiServer(t)
	for _, q := range []string{"DELETE FROM entries", "SELECT * FROM read_csv('/etc/passwd')"} {
		out, err := runCmd(t, "sql", "--url", base, "--token", testToken, q)
		if err == nil || !strings.Contains(err.Error(), "HTTP 400") {
			t.Errorf("sql %q: %v\n%s; want HTTP 400", q, err, out)
		}
	}
	if out, _ := runCmd(t, "sql", "--url", base, "--token", testToken, "SELECT count(*) FROM entries"); !strings.Contains(out, "\n2 ") && !strings.Contains(out, "\n2\n") {
		t.Errorf("entries after refused statements:\n%s", out)
	}
	if _, err := runCmd(t, "sql", "--url", base, "--token", testToken); err == nil {
		t.Error("sql without a query succeeded")
	}
	if _, err := runCmd(t, "sql", "--url", base, "--token", "wrong-token", "SELECT 1"); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("sql with a wrong token: %v, want HTTP 401", err)
	}
}

func writeRules(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRulesApplyAndList(t *testing.T) {
	base := apiServer(t)
	first := writeRules(t, `rules:
  - {name: passwd, type: file, paths: [/etc/passwd], severity: CRITICAL}
  - {name: decoy, type: file, paths: [/srv/decoy.txt], severity: WARN, host: web-01}
`)
	out, err := runCmd(t, "rules", "apply", "--url", base, "--token", testToken, "-f", first)
	if err != nil {
		t.Fatalf("rules apply: %v\n%s", err, out)
	}
	for _, w := range []string{"+ added   decoy (host web-01)\n", "+ added   passwd (all hosts)\n", "2 rules applied from " + first + ": 2 added, 0 changed, 0 removed\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("rules apply printed\n%s\nwant a line %q", out, w)
		}
	}
	second := writeRules(t, `rules:
  - {name: passwd, type: file, paths: [/etc/passwd], severity: CRITICAL}
  - {name: shadow, type: file, paths: [/etc/shadow], severity: CRITICAL}
  - {name: decoy, type: file, paths: [/srv/decoy.txt], severity: CRITICAL, host: web-01}
`)
	out, err = runCmd(t, "rules", "apply", "--url", base, "--token", testToken, "-f", second)
	if err != nil || !strings.Contains(out, "+ added   shadow (all hosts)\n~ changed decoy (host web-01)\n") ||
		!strings.Contains(out, "1 added, 1 changed, 0 removed") {
		t.Errorf("second apply: %v\n%s", err, out)
	}
	out, err = runCmd(t, "rules", "list", "--url", base, "--token", testToken)
	if err != nil {
		t.Fatalf("rules list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "HOST") || !strings.HasPrefix(lines[1], "*       passwd  file  CRITICAL  /etc/passwd") ||
		!strings.HasPrefix(lines[3], "web-01  decoy   file  CRITICAL  /srv/decoy.txt") {
		t.Errorf("rules list printed\n%s", out)
	}
	if out, _ = runCmd(t, "rules", "list", "--url", base, "--token", testToken, "--host", "db-01"); strings.Contains(out, "decoy") {
		t.Errorf("rules list --host db-01 shows web-01's rule:\n%s", out)
	}

	// A file the agent would refuse is refused whole, with its line, and nothing changes.
	bad := writeRules(t, "rules:\n  - {name: passwd, type: file, paths: [etc/passwd], severity: HIGH}\n")
	if _, err := runCmd(t, "rules", "apply", "--url", base, "--token", testToken, "-f", bad); err == nil ||
		!strings.Contains(err.Error(), "rules.yaml:2: rules[0].severity") {
		t.Errorf("rules apply of a bad file: %v, want the file, line and key", err)
	}
	if out, _ := runCmd(t, "rules", "list", "--url", base, "--token", testToken); strings.Count(out, "\n") != 4 {
		t.Errorf("rules after a refused apply:\n%s", out)
	}
}
