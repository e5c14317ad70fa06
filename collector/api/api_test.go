package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tripwire-project/tripwire/collector/api"
	"github.com/tripwire-project/tripwire/collector/live"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "test-token-123456"

// newServer serves the API over a real DuckDB store holding one host with two alerts
// and a notice.
func newServer(t *testing.T) (*httptest.Server, *live.Broker) {
	t.Helper()
	store := newStore(t)
	broker := live.NewBroker(0)
	srv := httptest.NewServer(api.New(api.Options{Store: store, Broker: broker, Tokens: []string{token}}))
	t.Cleanup(srv.Close)
	return srv, broker
}

// newStore opens an in-memory DuckDB store holding one host with two alerts and a
// notice, closed when the test ends.
func newStore(t *testing.T) storage.Store {
	t.Helper()
	store, err := duckdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	host := storage.Host{HostID: "3f7c1f7e-8a57-4a4b-9d1c-2b6f0e6f1a01", Hostname: "web-01", FirstSeen: now, LastSeen: now}
	if err := store.RegisterHost(ctx, host); err != nil {
		t.Fatal(err)
	}
	c := storetest.NewChain()
	entries := append(
		[]batch.Entry{},
		c.Event(now.Add(-3*time.Minute), chain.Event{Type: chain.TypeFile, Rule: "passwd", Severity: chain.SeverityCritical, Path: "/etc/passwd", Op: "read", PID: 42}),
		c.Event(now.Add(-2*time.Minute), chain.Event{Type: chain.TypeFile, Rule: "decoy", Severity: chain.SeverityWarn, Path: "/srv/decoy", Op: "write", PID: 43}),
		c.Notice(now.Add(-time.Minute), chain.KindAgent, chain.Notice{What: "agent_stopped"}),
	)
	if err := store.AppendEntries(ctx, host.HostID, entries); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func get(t *testing.T, url, tok string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", url, err)
	}
	return resp, body
}

func TestAuthentication(t *testing.T) {
	srv, _ := newServer(t)
	for name, tok := range map[string]string{"none": "", "wrong": "nope-nope-nope", "prefix": token[:5]} {
		resp, body := get(t, srv.URL+"/api/v1/alerts", tok)
		if resp.StatusCode != http.StatusUnauthorized || body["error"] == nil {
			t.Errorf("%s token: %d %v, want 401 with an error", name, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, srv.URL+"/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz needs no token: got %d", resp.StatusCode)
	}
}

func TestBadParametersAreNamed(t *testing.T) {
	srv, _ := newServer(t)
	for query, param := range map[string]string{
		"type=DISK":                     "type",
		"severity=HIGH":                 "severity",
		"from=yesterday":                "from",
		"to=2026-13-01T00:00:00Z":       "to",
		"limit=0":                       "limit",
		"limit=5000":                    "limit",
		"offset=-1":                     "offset",
		"colour=red":                    "colour",
		"rule=a%00b":                    "rule",
		"status=closed":                 "status",
		"q=" + strings.Repeat("x", 300): "q",
		"from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z": "to",
	} {
		resp, body := get(t, srv.URL+"/api/v1/alerts?"+query, token)
		if resp.StatusCode != http.StatusBadRequest || body["param"] != param || !strings.Contains(body["error"].(string), param) {
			t.Errorf("%s: %d %v, want 400 naming %q", query, resp.StatusCode, body, param)
		}
	}
}

func TestAlertsFilterAndShape(t *testing.T) {
	srv, _ := newServer(t)
	cases := map[string][]string{
		"":                  {"decoy", "passwd"}, // newest first; the notice is not an alert
		"type=file":         {"decoy", "passwd"},
		"severity=CRITICAL": {"passwd"},
		"host=web-01":       {"decoy", "passwd"},
		"host=other":        {},
		"type=PROCESS":      {},
		"limit=1":           {"decoy"},
		"limit=1&offset=1":  {"passwd"},
	}
	for query, want := range cases {
		resp, body := get(t, srv.URL+"/api/v1/alerts?"+query, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", query, resp.StatusCode, body)
		}
		alerts := body["alerts"].([]any)
		var got []string
		for _, a := range alerts {
			got = append(got, a.(map[string]any)["rule_name"].(string))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: rules %v, want %v", query, got, want)
		}
	}
	_, body := get(t, srv.URL+"/api/v1/alerts?severity=CRITICAL", token)
	a := body["alerts"].([]any)[0].(map[string]any)
	for _, k := range []string{"alert_id", "host", "host_id", "seq", "timestamp", "tripwire_type", "rule_name", "severity", "event_detail"} {
		if _, ok := a[k]; !ok {
			t.Errorf("alert lacks %q: %v", k, a)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, a["timestamp"].(string)); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	if d := a["event_detail"].(map[string]any); d["path"] != "/etc/passwd" || d["pid"] != float64(42) {
		t.Errorf("event_detail = %v", d)
	}
}

func TestHostsAndAudit(t *testing.T) {
	srv, _ := newServer(t)
	_, body := get(t, srv.URL+"/api/v1/hosts", token)
	if hosts := body["hosts"].([]any); len(hosts) != 1 || hosts[0].(map[string]any)["hostname"] != "web-01" {
		t.Errorf("hosts = %v", body)
	}
	_, body = get(t, srv.URL+"/api/v1/audit?host=web-01", token)
	entries := body["entries"].([]any)
	if len(entries) != 3 || entries[2].(map[string]any)["kind"] != "agent" {
		t.Fatalf("audit = %v", body)
	}
	for _, e := range entries {
		m := e.(map[string]any)
		if chain.Hash(m["prev_hash"].(string), []byte(m["payload"].(string))) != m["hash"] {
			t.Errorf("entry %v: the hash does not recompute from the served payload", m["seq"])
		}
	}
}

func TestAlertStream(t *testing.T) {
	srv, broker := newServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/alerts/stream?type=FILE", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Scan() // ": subscribed" comes once the subscription exists
	broker.Publish(storage.Alert{AlertID: "a1", TripwireType: "PROCESS", RuleName: "filtered-out"},
		storage.Alert{AlertID: "a2", TripwireType: "FILE", RuleName: "wanted"})
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"rule_name":"wanted"`) {
				t.Fatalf("first streamed alert %s, want the FILE one", line)
			}
			return
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
}
