package fleettest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/collector/api"
	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/fleet"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

func TestMain(m *testing.M) { testservers.Main(m) }

const token = "fleet-test-token"

// newServer serves the API over a fleet store holding two alerts of web-01.
func newServer(t *testing.T) string {
	t.Helper()
	ch := testservers.ClickHouse(t)
	store, err := fleet.Open(t.Context(), fleet.Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: testservers.PostgreSQL(t)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	h := storage.Host{HostID: "id-web-01", Hostname: "web-01", FirstSeen: now, LastSeen: now}
	if err := store.RegisterHost(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	c := storetest.NewChain()
	if err := store.AppendEntries(t.Context(), h.HostID, []batch.Entry{
		c.Event(now.Add(-2*time.Minute), chain.Event{Type: chain.TypeFile, Rule: "passwd", Severity: chain.SeverityCritical, Path: "/etc/passwd", User: "Mallory"}),
		c.Event(now.Add(-time.Minute), chain.Event{Type: chain.TypeProcess, Rule: "netcat", Severity: chain.SeverityWarn, Cmdline: "nc 203.0.113.7 4444"}),
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Options{Store: store, Tokens: []string{token}}))
	t.Cleanup(func() { srv.Close(); store.Close() })
	return srv.URL
}

func call(t *testing.T, method, url, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp, b.Bytes()
}

func TestFleetEndpoints(t *testing.T) {
	base := newServer(t)
	var alerts struct {
		Alerts []storage.Alert `json:"alerts"`
	}
	resp, body := call(t, http.MethodGet, base+"/api/v1/alerts?q=mallory&host=web-01", "")
	if err := json.Unmarshal(body, &alerts); err != nil || resp.StatusCode != http.StatusOK || len(alerts.Alerts) != 1 || alerts.Alerts[0].RuleName != "passwd" {
		t.Fatalf("alerts?q=mallory: %d %s", resp.StatusCode, body)
	}
	id := alerts.Alerts[0].AlertID
	if resp, body := call(t, http.MethodPatch, base+"/api/v1/alerts/"+id, `{"status":"resolved","note":"test"}`); resp.StatusCode != http.StatusOK ||
		!strings.Contains(string(body), `"triage_status":"resolved","triage_by":"token"`) {
		t.Errorf("PATCH: %d %s", resp.StatusCode, body)
	}
	from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	resp, body = call(t, http.MethodGet, base+"/api/v1/alerts/counts?interval=2h&group_by=host&status=open&from="+from+"&to="+to, "")
	var counts struct {
		Buckets []storage.CountBucket `json:"buckets"`
	}
	if err := json.Unmarshal(body, &counts); err != nil || resp.StatusCode != http.StatusOK || len(counts.Buckets) != 1 ||
		counts.Buckets[0].Key != "web-01" || counts.Buckets[0].Count != 1 {
		t.Errorf("counts of open alerts by host: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, http.MethodPost, base+"/api/v1/sql", `{"query":"ALTER TABLE entries DELETE WHERE 1"}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a mutation over SQL: %d %s, want 400", resp.StatusCode, body)
	}
	if resp, body := call(t, http.MethodPut, base+"/api/v1/rules", `{"rules":[{"name":"passwd","type":"file","severity":"CRITICAL","paths":["/etc/passwd"]}]}`); resp.StatusCode != http.StatusOK {
		t.Errorf("PUT rules: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, http.MethodGet, base+"/api/v1/rules", ""); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"paths":["/etc/passwd"]`) {
		t.Errorf("GET rules: %d %s", resp.StatusCode, body)
	}
}

// TestSQLErrorAfterRows checks the stream's last line when ClickHouse fails after it
// sent rows: 200, the rows, then {"error": ...} instead of an end line.
func TestSQLErrorAfterRows(t *testing.T) {
	base := newServer(t)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/sql",
		strings.NewReader(`{"query":"SELECT number, throwIf(number >= 300000) FROM system.numbers LIMIT 400000","max_rows":100000}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 (rows came before the error)", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	// max_rows 100000 stops the stream before the error at 300000: truncated.
	if last := lines[len(lines)-1]; last != `{"end":{"rows":100000,"truncated":true}}` {
		t.Errorf("last line %s, want the end of a truncated result", last)
	}

	req, _ = http.NewRequest(http.MethodPost, base+"/api/v1/sql",
		strings.NewReader(`{"query":"SELECT number, throwIf(number >= 70000) FROM system.numbers LIMIT 400000","max_rows":100000}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	sc = bufio.NewScanner(resp2.Body)
	lines = lines[:0]
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if resp2.StatusCode != http.StatusOK || len(lines) < 3 || !strings.HasPrefix(lines[len(lines)-1], `{"error":`) {
		last := ""
		if len(lines) > 0 {
			last = lines[len(lines)-1]
		}
		t.Errorf("error after rows: %d, %d lines, last %s; want 200 and an error line last", resp2.StatusCode, len(lines), last)
	}
}
