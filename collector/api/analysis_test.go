package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// do sends a request with a JSON body and the test token, and decodes a JSON answer.
func do(t *testing.T, method, url string, body any) (*http.Response, map[string]any) {
	t.Helper()
	var r *bytes.Reader
	if s, ok := body.(string); ok {
		r = bytes.NewReader([]byte(s))
	} else {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v", method, url, err)
	}
	return resp, out
}

func rulesOf(body map[string]any) string {
	var got []string
	for _, a := range body["alerts"].([]any) {
		got = append(got, a.(map[string]any)["rule_name"].(string))
	}
	return strings.Join(got, ",")
}

func TestAlertsSearchAndTriage(t *testing.T) {
	srv, _ := newServer(t)
	_, body := get(t, srv.URL+"/api/v1/alerts", token)
	alerts := body["alerts"].([]any)
	first := alerts[0].(map[string]any)
	if first["triage_status"] != "open" || first["triage_by"] != "" || first["triage_at"] != nil {
		t.Errorf("untriaged alert: status %v by %v at %v, want open, \"\", null", first["triage_status"], first["triage_by"], first["triage_at"])
	}
	for query, want := range map[string]string{
		"rule=passwd":       "passwd",
		"rule=nope":         "",
		"q=%2FSRV%2FDECOY":  "decoy",
		"q=%22op%22%3A%22":  "decoy,passwd", // "op":" — the detail's JSON text
		"q=nothing-matches": "",
		"status=open":       "decoy,passwd",
		"status=resolved":   "",
	} {
		resp, body := get(t, srv.URL+"/api/v1/alerts?"+query, token)
		if resp.StatusCode != http.StatusOK || rulesOf(body) != want {
			t.Errorf("%s: %d rules %q, want %q", query, resp.StatusCode, rulesOf(body), want)
		}
	}

	id := first["alert_id"].(string)
	before := time.Now().Add(-time.Minute)
	resp, a := do(t, http.MethodPatch, srv.URL+"/api/v1/alerts/"+id, map[string]string{"status": "acknowledged", "note": "on it"})
	if resp.StatusCode != http.StatusOK || a["alert_id"] != id || a["triage_status"] != "acknowledged" || a["triage_by"] != "token" || a["triage_note"] != "on it" {
		t.Fatalf("PATCH: %d %v", resp.StatusCode, a)
	}
	if at, err := time.Parse(time.RFC3339Nano, a["triage_at"].(string)); err != nil || at.Before(before) {
		t.Errorf("triage_at %v (%v), want now", a["triage_at"], err)
	}
	if _, body := get(t, srv.URL+"/api/v1/alerts?status=acknowledged", token); rulesOf(body) != first["rule_name"] {
		t.Errorf("status=acknowledged: %q, want %q", rulesOf(body), first["rule_name"])
	}

	for _, tc := range []struct {
		id    string
		body  any
		code  int
		param string
	}{
		{storage.AlertID("nobody", 1), map[string]string{"status": "resolved"}, http.StatusNotFound, "alert_id"},
		{"not-an-id", map[string]string{"status": "resolved"}, http.StatusNotFound, "alert_id"},
		{id, map[string]string{"status": "closed"}, http.StatusBadRequest, "status"},
		{id, map[string]string{"note": "no status"}, http.StatusBadRequest, "status"},
		{id, map[string]any{"status": 3}, http.StatusBadRequest, "status"},
		{id, map[string]string{"status": "resolved", "colour": "red"}, http.StatusBadRequest, "colour"},
		{id, "not json", http.StatusBadRequest, ""},
	} {
		resp, body := do(t, http.MethodPatch, srv.URL+"/api/v1/alerts/"+tc.id, tc.body)
		if resp.StatusCode != tc.code || body["error"] == nil || (tc.param != "" && body["param"] != tc.param) {
			t.Errorf("PATCH %s %v: %d %v, want %d naming %q", tc.id, tc.body, resp.StatusCode, body, tc.code, tc.param)
		}
	}
	// The refused changes left the triage as it was.
	if _, body := get(t, srv.URL+"/api/v1/alerts?status=acknowledged", token); rulesOf(body) != first["rule_name"] {
		t.Errorf("after refused changes, status=acknowledged: %q", rulesOf(body))
	}
}

func TestAlertCounts(t *testing.T) {
	srv, _ := newServer(t)
	now := time.Now().UTC()
	span := url.Values{"from": {now.Add(-time.Hour).Format(time.RFC3339)}, "to": {now.Add(time.Hour).Format(time.RFC3339)}}
	q := func(extra string) string { return srv.URL + "/api/v1/alerts/counts?" + span.Encode() + "&" + extra }
	resp, body := get(t, q("interval=2h&group_by=severity"), token)
	if resp.StatusCode != http.StatusOK || body["interval_s"] != float64(7200) {
		t.Fatalf("counts: %d %v", resp.StatusCode, body)
	}
	var total float64
	for _, b := range body["buckets"].([]any) {
		m := b.(map[string]any)
		ts, err := time.Parse(time.RFC3339, m["time"].(string))
		if err != nil || ts.Unix()%7200 != 0 {
			t.Errorf("bucket time %v (%v) is not a multiple of 2h since the epoch", m["time"], err)
		}
		total += m["count"].(float64)
	}
	if total != 2 {
		t.Errorf("counts sum to %v, want the 2 alerts: %v", total, body)
	}
	if _, body := get(t, q("interval=60&group_by=rule&rule=decoy"), token); len(body["buckets"].([]any)) != 1 ||
		body["buckets"].([]any)[0].(map[string]any)["key"] != "decoy" || body["interval_s"] != float64(60) {
		t.Errorf("counts of rule decoy: %v", body)
	}
	for query, param := range map[string]string{
		"interval=60s&to=" + url.QueryEscape(now.Format(time.RFC3339)):   "from",
		"interval=60s&from=" + url.QueryEscape(now.Format(time.RFC3339)): "to",
	} {
		resp, body := get(t, srv.URL+"/api/v1/alerts/counts?"+query, token)
		if resp.StatusCode != http.StatusBadRequest || body["param"] != param {
			t.Errorf("%s: %d %v, want 400 naming %q", query, resp.StatusCode, body, param)
		}
	}
	for extra, param := range map[string]string{
		"interval=500ms":               "interval",
		"interval=1.5s":                "interval",
		"interval=0":                   "interval",
		"":                             "interval",
		"interval=1s":                  "interval", // 7200 buckets is fine, but 2 hours of 1 s is 7200: see below
		"interval=60s&group_by=colour": "group_by",
		"interval=60s&status=closed":   "status",
		"interval=60s&limit=5":         "limit",
	} {
		if extra == "interval=1s" {
			continue
		}
		resp, body := get(t, q(extra), token)
		if resp.StatusCode != http.StatusBadRequest || body["param"] != param {
			t.Errorf("%s: %d %v, want 400 naming %q", extra, resp.StatusCode, body, param)
		}
	}
	// 2 hours of 1 s intervals is 7200 buckets at most: allowed; 3 hours is not.
	if resp, body := get(t, q("interval=1s"), token); resp.StatusCode != http.StatusOK {
		t.Errorf("7200 intervals: %d %v", resp.StatusCode, body)
	}
	long := url.Values{"from": {now.Add(-3 * time.Hour).Format(time.RFC3339)}, "to": {now.Format(time.RFC3339)}, "interval": {"1s"}}
	if resp, body := get(t, srv.URL+"/api/v1/alerts/counts?"+long.Encode(), token); resp.StatusCode != http.StatusBadRequest || body["param"] != "interval" {
		t.Errorf("10800 intervals: %d %v, want 400 naming interval", resp.StatusCode, body)
	}
}

// postSQL sends a query and returns the status and the NDJSON lines (or the one JSON
// object of an error).
func postSQL(t *testing.T, base string, body any) (int, string, []json.RawMessage) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/sql", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []json.RawMessage
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, json.RawMessage(sc.Text()))
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), lines
}

func TestSQL(t *testing.T) {
	srv, _ := newServer(t)
	code, ctype, lines := postSQL(t, srv.URL, map[string]any{"query": "SELECT seq, kind, ts FROM entries ORDER BY seq"})
	if code != http.StatusOK || ctype != "application/x-ndjson" || len(lines) != 5 {
		t.Fatalf("SELECT: %d %s %s", code, ctype, lines)
	}
	var cols struct {
		Columns []storage.Column `json:"columns"`
	}
	if err := json.Unmarshal(lines[0], &cols); err != nil || fmt.Sprint(cols.Columns) != "[{seq UBIGINT} {kind VARCHAR} {ts TIMESTAMP_NS}]" {
		t.Errorf("columns line %s (%v)", lines[0], err)
	}
	var row []any
	if err := json.Unmarshal(lines[1], &row); err != nil || row[0] != float64(1) || row[1] != "event" {
		t.Errorf("first row %s (%v)", lines[1], err)
	} else if _, err := time.Parse(time.RFC3339Nano, row[2].(string)); err != nil {
		t.Errorf("time value %v: %v", row[2], err)
	}
	if string(lines[4]) != `{"end":{"rows":3,"truncated":false}}` {
		t.Errorf("last line %s", lines[4])
	}
	if code, _, lines = postSQL(t, srv.URL, map[string]any{"query": "SELECT seq FROM entries", "max_rows": 2}); code != http.StatusOK ||
		len(lines) != 4 || string(lines[3]) != `{"end":{"rows":2,"truncated":true}}` {
		t.Errorf("max_rows 2: %d %s", code, lines)
	}
	// No rows: the columns and the end.
	if code, _, lines = postSQL(t, srv.URL, map[string]any{"query": "SELECT seq FROM entries WHERE false"}); code != http.StatusOK ||
		len(lines) != 2 || string(lines[1]) != `{"end":{"rows":0,"truncated":false}}` {
		t.Errorf("no rows: %d %s", code, lines)
	}
	// DuckDB computes a result whole before its first row is read: an error while
	// computing it comes before any row, as a 400. (An error once rows are out, which
	// ClickHouse's streamed blocks can have, is tested over the fleet store.)
	resp, body := do(t, http.MethodPost, srv.URL+"/api/v1/sql", map[string]any{"max_rows": 100000,
		"query": "SELECT CASE WHEN i < 50000 THEN i ELSE error('boom at ' || i) END FROM range(100000) AS t(i)"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["error"]), "boom") {
		t.Errorf("a failing query: %d %v, want 400 with DuckDB's error", resp.StatusCode, body)
	}

	for _, tc := range []struct {
		body  any
		param string
	}{
		{map[string]any{"query": "INSERT INTO hosts (host_id) VALUES ('x')"}, "query"},
		{map[string]any{"query": "DROP TABLE entries"}, "query"},
		{map[string]any{"query": "SELECT * FROM read_csv('/etc/passwd')"}, "query"},
		{map[string]any{"query": "COPY entries TO '/tmp/api-test-copy.csv'"}, "query"},
		{map[string]any{"query": "SELECT nothing FROM nowhere"}, "query"},
		{map[string]any{"query": " "}, "query"},
		{map[string]any{"query": "SELECT 1", "max_rows": 0}, "max_rows"},
		{map[string]any{"query": "SELECT 1", "max_rows": 1000000}, "max_rows"},
		{map[string]any{"query": "SELECT 1", "limit": 5}, "limit"},
	} {
		resp, body := do(t, http.MethodPost, srv.URL+"/api/v1/sql", tc.body)
		if resp.StatusCode != http.StatusBadRequest || body["error"] == nil || body["param"] != tc.param {
			t.Errorf("%v: %d %v, want 400 naming %q", tc.body, resp.StatusCode, body, tc.param)
		}
	}
	// Nothing was changed by the refused statements.
	if _, body := get(t, srv.URL+"/api/v1/audit", token); len(body["entries"].([]any)) != 3 {
		t.Errorf("audit after refused SQL: %v", body)
	}
}

func TestRules(t *testing.T) {
	srv, _ := newServer(t)
	if _, body := get(t, srv.URL+"/api/v1/rules", token); fmt.Sprint(body["rules"]) != "[]" {
		t.Fatalf("rules of a new store: %v", body)
	}
	put := map[string]any{"rules": []map[string]any{
		{"name": "passwd", "type": "file", "severity": "CRITICAL", "paths": []string{"/etc/passwd"}},
		{"name": "decoy", "type": "file", "severity": "WARN", "paths": []string{"/srv/decoy"}, "host": "web-01"},
	}}
	resp, body := do(t, http.MethodPut, srv.URL+"/api/v1/rules", put)
	if resp.StatusCode != http.StatusOK || fmt.Sprint(body["added"]) != "[map[host: name:passwd] map[host:web-01 name:decoy]]" ||
		fmt.Sprint(body["removed"]) != "[]" {
		t.Fatalf("PUT rules: %d %v", resp.StatusCode, body)
	}
	_, body = get(t, srv.URL+"/api/v1/rules", token)
	rules := body["rules"].([]any)
	if len(rules) != 2 {
		t.Fatalf("rules = %v", body)
	}
	global := rules[0].(map[string]any)
	if global["name"] != "passwd" || global["host"] != "" || global["type"] != "file" || global["severity"] != "CRITICAL" ||
		fmt.Sprint(global["paths"]) != "[/etc/passwd]" {
		t.Errorf("global rule = %v", global)
	}
	if _, err := time.Parse(time.RFC3339Nano, global["updated_at"].(string)); err != nil {
		t.Errorf("updated_at: %v", err)
	}
	if _, body := get(t, srv.URL+"/api/v1/rules?host=db-01", token); len(body["rules"].([]any)) != 1 {
		t.Errorf("rules of db-01 = %v, want the global one", body)
	}
	for _, tc := range []struct {
		body  any
		param string
	}{
		{map[string]any{"rules": []map[string]any{{"type": "file", "severity": "INFO"}}}, "rules[0].name"},
		{map[string]any{"rules": []map[string]any{{"name": "x", "type": 1, "severity": "INFO"}}}, "rules[0].type"},
		{map[string]any{"rules": []map[string]any{{"name": "x", "type": "file", "severity": "INFO", "updated_at": "now"}}}, "rules[0].updated_at"},
		{map[string]any{"rules": []map[string]any{{"name": "x", "type": "file", "severity": "INFO"}, {"name": "x", "type": "file", "severity": "WARN"}}}, "rules"},
		{map[string]any{}, "rules"},
	} {
		resp, body := do(t, http.MethodPut, srv.URL+"/api/v1/rules", tc.body)
		if resp.StatusCode != http.StatusBadRequest || body["param"] != tc.param {
			t.Errorf("PUT %v: %d %v, want 400 naming %q", tc.body, resp.StatusCode, body, tc.param)
		}
	}
	if _, body := get(t, srv.URL+"/api/v1/rules", token); len(body["rules"].([]any)) != 2 {
		t.Errorf("rules after refused PUTs = %v", body)
	}
	resp, body = do(t, http.MethodPut, srv.URL+"/api/v1/rules", map[string]any{"rules": []any{}})
	if resp.StatusCode != http.StatusOK || len(body["removed"].([]any)) != 2 {
		t.Errorf("PUT no rules: %d %v", resp.StatusCode, body)
	}
}
