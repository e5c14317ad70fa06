package storetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
)

func testAlertSearch(t *testing.T, s storage.Store) {
	web, db, all := alertFixture(t, s)
	cases := []struct {
		name string
		f    storage.AlertFilter
		keep func(x expected) bool
	}{
		{"rule", storage.AlertFilter{Rule: "passwd-read"}, func(x expected) bool { return x.event.Rule == "passwd-read" }},
		{"rule and host", storage.AlertFilter{Rule: "netcat", Host: web.Hostname}, func(x expected) bool {
			return x.event.Rule == "netcat" && x.host.HostID == web.HostID
		}},
		{"unknown rule", storage.AlertFilter{Rule: "nope"}, func(expected) bool { return false }},
		{"text: a path, in another case", storage.AlertFilter{Text: "/ETC/Shadow"}, func(x expected) bool { return x.event.Path == "/etc/shadow" }},
		{"text: an IP", storage.AlertFilter{Text: "203.0.113.7"}, func(x expected) bool { return x.event.Type == chain.TypeProcess }},
		{"text: a user", storage.AlertFilter{Text: "deploy"}, func(x expected) bool { return x.event.User == "deploy" }},
		{"text and host and time", storage.AlertFilter{Text: "deploy", Host: db.HostID, From: at(1500 * time.Millisecond)}, func(x expected) bool {
			return x.event.User == "deploy" && x.host.HostID == db.HostID && !x.entry.Time.Before(at(1500*time.Millisecond))
		}},
		{"text: no match", storage.AlertFilter{Text: "no-such-thing"}, func(expected) bool { return false }},
		{"status open: every alert", storage.AlertFilter{Status: storage.TriageOpen}, func(expected) bool { return true }},
		{"status resolved: none yet", storage.AlertFilter{Status: storage.TriageResolved}, func(expected) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []expected
			for _, x := range all {
				if tc.keep(x) {
					want = append(want, x)
				}
			}
			wantAlerts(t, alertsOf(t, s, tc.f), want)
		})
	}
	// The text filter pages like the others.
	files := alertsOf(t, s, storage.AlertFilter{Text: "deploy"})
	if got := alertsOf(t, s, storage.AlertFilter{Text: "deploy", Limit: 2, Offset: 1}); len(files) < 3 ||
		!slices.Equal(keys(got, alertKey), keys(files[1:3], alertKey)) {
		t.Errorf("text filter, limit 2 offset 1 = %v, want %v", keys(got, alertKey), keys(files, alertKey))
	}
}

func testTriage(t *testing.T, s storage.Store) {
	_, _, all := alertFixture(t, s)
	for _, a := range alertsOf(t, s, storage.AlertFilter{}) {
		if a.TriageStatus != storage.TriageOpen || a.TriageBy != "" || a.TriageAt != nil || a.TriageNote != "" {
			t.Fatalf("alert %s before triage: status %q by %q at %v note %q, want open and nothing else",
				alertKey(a), a.TriageStatus, a.TriageBy, a.TriageAt, a.TriageNote)
		}
	}
	target := all[2]
	id := storage.AlertID(target.host.HostID, target.entry.Seq)
	before := time.Now().Add(-time.Minute)
	a, err := s.SetTriage(t.Context(), id, storage.TriageAcknowledged, "alice", "looking into it")
	if err != nil {
		t.Fatalf("SetTriage: %v", err)
	}
	wantAlerts(t, []storage.Alert{a}, []expected{target})
	if a.TriageStatus != storage.TriageAcknowledged || a.TriageBy != "alice" || a.TriageNote != "looking into it" ||
		a.TriageAt == nil || a.TriageAt.Before(before) || a.TriageAt.After(time.Now().Add(time.Minute)) || a.TriageAt.Location() != time.UTC {
		t.Fatalf("SetTriage returned status %q by %q note %q at %v, want acknowledged by alice, now, in UTC",
			a.TriageStatus, a.TriageBy, a.TriageNote, a.TriageAt)
	}
	// Alerts shows it, and filters on it.
	acked := alertsOf(t, s, storage.AlertFilter{Status: storage.TriageAcknowledged})
	wantAlerts(t, acked, []expected{target})
	if acked[0].TriageBy != "alice" || acked[0].TriageAt == nil || !acked[0].TriageAt.Equal(*a.TriageAt) {
		t.Errorf("Alerts shows triage by %q at %v, want alice at %v", acked[0].TriageBy, acked[0].TriageAt, a.TriageAt)
	}
	var rest []expected
	for _, x := range all {
		if x.key() != target.key() {
			rest = append(rest, x)
		}
	}
	wantAlerts(t, alertsOf(t, s, storage.AlertFilter{Status: storage.TriageOpen}), rest)

	// Changed again; and back to open.
	if a, err = s.SetTriage(t.Context(), id, storage.TriageResolved, "bob", ""); err != nil || a.TriageStatus != storage.TriageResolved || a.TriageBy != "bob" || a.TriageNote != "" {
		t.Fatalf("SetTriage to resolved = %+v, %v", a, err)
	}
	wantAlerts(t, alertsOf(t, s, storage.AlertFilter{Status: storage.TriageAcknowledged}), nil)
	wantAlerts(t, alertsOf(t, s, storage.AlertFilter{Status: storage.TriageResolved}), []expected{target})

	for _, bad := range []struct {
		id, status string
		want       error
	}{
		{storage.AlertID("no-such-host", 1), storage.TriageResolved, storage.ErrNotFound},
		{"not-a-uuid", storage.TriageResolved, storage.ErrNotFound},
		{id, "closed", storage.ErrInvalidTriage},
		{id, "", storage.ErrInvalidTriage},
	} {
		if _, err := s.SetTriage(t.Context(), bad.id, bad.status, "mallory", ""); !errors.Is(err, bad.want) {
			t.Errorf("SetTriage(%q, %q) = %v, want an error wrapping %v", bad.id, bad.status, err, bad.want)
		}
	}
	if got := alertsOf(t, s, storage.AlertFilter{Status: storage.TriageResolved}); len(got) != 1 || got[0].TriageBy != "bob" {
		t.Errorf("refused triage changed the alert: %+v", got)
	}
}

// countOf is the suite's own bucketing: floor of the event time to a multiple of the
// interval since the epoch.
func countOf(xs []expected, interval time.Duration, key func(expected) string) []storage.CountBucket {
	counts := map[storage.CountBucket]uint64{}
	for _, x := range xs {
		ns := x.entry.Time.UnixNano()
		step := interval.Nanoseconds()
		start := ns - ((ns%step)+step)%step
		counts[storage.CountBucket{Time: time.Unix(0, start).UTC(), Key: key(x)}]++
	}
	var out []storage.CountBucket
	for b, n := range counts {
		b.Count = n
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b storage.CountBucket) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

func counts(t *testing.T, s storage.Store, f storage.CountFilter) []storage.CountBucket {
	t.Helper()
	got, err := s.AlertCounts(t.Context(), f)
	if err != nil {
		t.Fatalf("AlertCounts(%+v): %v", f, err)
	}
	return got
}

func wantCounts(t *testing.T, got, want []storage.CountBucket) {
	t.Helper()
	for _, b := range got {
		if b.Time.Location() != time.UTC {
			t.Errorf("bucket %v is not in UTC", b.Time)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("buckets\n got %v\nwant %v", got, want)
	}
}

func testAlertCounts(t *testing.T, s storage.Store) {
	web, _, all := alertFixture(t, s)
	span := storage.AlertFilter{From: at(-time.Hour), To: at(time.Hour)}
	// Every event of the fixture falls in one UTC minute: 10:26.
	minute := time.Date(2026, 3, 14, 10, 26, 0, 0, time.UTC)
	wantCounts(t, counts(t, s, storage.CountFilter{Alert: span, Interval: time.Minute, GroupBy: storage.GroupByType}),
		[]storage.CountBucket{{Time: minute, Key: "FILE", Count: 5}, {Time: minute, Key: "NETWORK", Count: 1}, {Time: minute, Key: "PROCESS", Count: 2}})

	byKey := map[string]func(expected) string{
		storage.GroupByType:     func(x expected) string { return x.event.Type },
		storage.GroupBySeverity: func(x expected) string { return x.event.Severity },
		storage.GroupByHost:     func(x expected) string { return x.host.Hostname },
		storage.GroupByRule:     func(x expected) string { return x.event.Rule },
	}
	for _, group := range storage.GroupByKeys {
		for _, interval := range []time.Duration{time.Second, 7 * time.Second, time.Hour} {
			t.Run(fmt.Sprintf("%s per %v", group, interval), func(t *testing.T) {
				got := counts(t, s, storage.CountFilter{Alert: span, Interval: interval, GroupBy: group})
				wantCounts(t, got, countOf(all, interval, byKey[group]))
			})
		}
	}

	// Filters apply, as in Alerts.
	filters := []struct {
		name string
		f    storage.AlertFilter
		keep func(x expected) bool
	}{
		{"host by name", storage.AlertFilter{Host: web.Hostname}, func(x expected) bool { return x.host.HostID == web.HostID }},
		{"severity", storage.AlertFilter{Severity: chain.SeverityCritical}, func(x expected) bool { return x.event.Severity == chain.SeverityCritical }},
		{"rule", storage.AlertFilter{Rule: "netcat"}, func(x expected) bool { return x.event.Rule == "netcat" }},
		{"text", storage.AlertFilter{Text: "/ETC/PASSWD"}, func(x expected) bool { return x.event.Path == "/etc/passwd" }},
		{"time range", storage.AlertFilter{From: at(2 * time.Second), To: at(3*time.Second + 1)}, within(at(2*time.Second), at(3*time.Second+1))},
	}
	target := all[0]
	if _, err := s.SetTriage(t.Context(), storage.AlertID(target.host.HostID, target.entry.Seq), storage.TriageResolved, "alice", ""); err != nil {
		t.Fatal(err)
	}
	filters = append(filters,
		struct {
			name string
			f    storage.AlertFilter
			keep func(x expected) bool
		}{"status resolved", storage.AlertFilter{Status: storage.TriageResolved}, func(x expected) bool { return x.key() == target.key() }},
		struct {
			name string
			f    storage.AlertFilter
			keep func(x expected) bool
		}{"status open", storage.AlertFilter{Status: storage.TriageOpen}, func(x expected) bool { return x.key() != target.key() }},
		struct {
			name string
			f    storage.AlertFilter
			keep func(x expected) bool
		}{"status acknowledged", storage.AlertFilter{Status: storage.TriageAcknowledged}, func(expected) bool { return false }},
	)
	for _, tc := range filters {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			if f.From.IsZero() {
				f.From, f.To = span.From, span.To
			}
			var want []expected
			for _, x := range all {
				if tc.keep(x) {
					want = append(want, x)
				}
			}
			got := counts(t, s, storage.CountFilter{Alert: f, Interval: time.Second, GroupBy: storage.GroupByRule})
			wantCounts(t, got, countOf(want, time.Second, byKey[storage.GroupByRule]))
		})
	}

	for _, bad := range []storage.CountFilter{
		{Alert: storage.AlertFilter{From: at(0), To: at(3 * time.Hour)}, Interval: time.Second, GroupBy: storage.GroupByType},
		{Alert: storage.AlertFilter{From: at(0), To: at(time.Hour)}, Interval: time.Millisecond, GroupBy: storage.GroupByType},
		{Alert: storage.AlertFilter{To: at(time.Hour)}, Interval: time.Second, GroupBy: storage.GroupByType},
		{Alert: span, Interval: time.Second, GroupBy: "colour"},
	} {
		if _, err := s.AlertCounts(t.Context(), bad); err == nil {
			t.Errorf("AlertCounts(%+v) succeeded", bad)
		}
	}
	tooMany := storage.CountFilter{Alert: storage.AlertFilter{From: at(0), To: at(3 * time.Hour)}, Interval: time.Second, GroupBy: storage.GroupByType}
	if _, err := s.AlertCounts(t.Context(), tooMany); !errors.Is(err, storage.ErrTooManyBuckets) {
		t.Errorf("AlertCounts over 10800 intervals = %v, want ErrTooManyBuckets", err)
	}
}

// rowRecorder is a RowWriter keeping what it is given.
type rowRecorder struct {
	cols []storage.Column
	rows [][]any
}

func (r *rowRecorder) Columns(cols []storage.Column) error { r.cols = cols; return nil }
func (r *rowRecorder) Row(values []any) error {
	r.rows = append(r.rows, slices.Clone(values))
	return nil
}

// RunQuery runs q on s and returns what it streamed.
func RunQuery(t *testing.T, s storage.Store, q string, maxRows int) (cols []storage.Column, rows [][]any, truncated bool, err error) {
	t.Helper()
	var r rowRecorder
	n, truncated, err := s.Query(t.Context(), q, maxRows, &r)
	if err == nil && n != len(r.rows) {
		t.Errorf("Query(%q) reported %d rows, streamed %d", q, n, len(r.rows))
	}
	return r.cols, r.rows, truncated, err
}

func testQuerySelect(t *testing.T, s storage.Store) {
	web, _, _ := alertFixture(t, s)
	total := len(audit(t, s, storage.AuditFilter{Limit: 1000}))
	cols, rows, truncated, err := RunQuery(t, s, "SELECT count(*) AS n FROM entries", 10)
	if err != nil {
		t.Fatalf("SELECT count: %v", err)
	}
	if len(cols) != 1 || cols[0].Name != "n" || cols[0].Type == "" || len(rows) != 1 || fmt.Sprint(rows[0][0]) != fmt.Sprint(total) || truncated {
		t.Errorf("SELECT count(*) AS n = columns %v rows %v truncated %v, want n = %d", cols, rows, truncated, total)
	}
	// Times come as RFC 3339 text.
	_, rows, _, err = RunQuery(t, s, "SELECT max(received_at) AS r FROM entries", 10)
	if err != nil || len(rows) != 1 {
		t.Fatalf("SELECT max(received_at): %v %v", rows, err)
	}
	if text, ok := rows[0][0].(string); !ok {
		t.Errorf("a time came as %T %v, want RFC 3339 text", rows[0][0], rows[0][0])
	} else if _, err := time.Parse(time.RFC3339Nano, text); err != nil {
		t.Errorf("a time came as %q: %v", text, err)
	}
	// Strings, and the rows of one host.
	_, rows, _, err = RunQuery(t, s, "SELECT host_id, seq FROM entries WHERE host_id = '"+web.HostID+"' ORDER BY seq", 100)
	if err != nil || len(rows) != 6 || rows[0][0] != web.HostID || fmt.Sprint(rows[5][1]) != "6" {
		t.Errorf("SELECT host_id, seq of web = %v, %v; want its 6 entries", rows, err)
	}
	// maxRows cuts the result and says so.
	_, rows, truncated, err = RunQuery(t, s, "SELECT seq FROM entries ORDER BY host_id, seq", 3)
	if err != nil || len(rows) != 3 || !truncated {
		t.Errorf("maxRows 3 of %d: %d rows, truncated %v, %v", total, len(rows), truncated, err)
	}
	_, rows, truncated, err = RunQuery(t, s, "SELECT seq FROM entries", total)
	if err != nil || len(rows) != total || truncated {
		t.Errorf("maxRows %d of %d: %d rows, truncated %v, %v", total, total, len(rows), truncated, err)
	}
	// A statement that fails is an error, not a refusal.
	if _, _, _, err := RunQuery(t, s, "SELECT no_such_column FROM entries", 10); err == nil || errors.Is(err, storage.ErrQueryRefused) {
		t.Errorf("a bad SELECT: %v, want an error that is not a refusal", err)
	}
}

func testQueryRefused(t *testing.T, s storage.Store) {
	_, _, _ = alertFixture(t, s)
	before := audit(t, s, storage.AuditFilter{Limit: 1000})
	alertsBefore := alertsOf(t, s, storage.AlertFilter{})
	out := filepath.Join(os.TempDir(), fmt.Sprintf("storetest-copy-%d.csv", time.Now().UnixNano()))
	for _, tc := range []struct {
		query string
		// refused: the engine's refusal (storage.ErrQueryRefused) is required, as the
		// statement is valid SQL in every backend's dialect; otherwise any error will do
		// (a dialect may not even parse it).
		refused bool
	}{
		{"INSERT INTO entries (host_id, seq) VALUES ('x', 99)", true},
		{"DROP TABLE entries", true},
		{"CREATE TABLE intruder (x INTEGER)", false},
		{"UPDATE entries SET kind = 'x'", false},
		{"DELETE FROM entries", false},
		{"ALTER TABLE entries DELETE WHERE 1 = 1", false},
		{"TRUNCATE TABLE entries", false},
		{"ATTACH '/tmp/storetest-intruder.db' AS intruder", false},
		{"COPY entries TO '" + out + "'", false},
		{"SELECT * FROM read_csv('/etc/passwd')", false},
		{"SELECT * FROM file('/etc/passwd', 'LineAsString', 'line String')", false},
		{"SELECT * INTO OUTFILE '" + out + "' FROM entries", false},
		{"SELECT 1; DROP TABLE entries", false},
		{"SET enable_external_access = true", false},
	} {
		cols, rows, _, err := RunQuery(t, s, tc.query, 10)
		if err == nil {
			t.Errorf("%s: ran (columns %v, rows %v), want it refused", tc.query, cols, rows)
			continue
		}
		if tc.refused && !errors.Is(err, storage.ErrQueryRefused) {
			t.Errorf("%s: %v, want an error wrapping storage.ErrQueryRefused", tc.query, err)
		}
		if len(rows) != 0 {
			t.Errorf("%s: streamed %v before failing", tc.query, rows)
		}
	}
	if _, err := os.Stat(out); err == nil {
		os.Remove(out)
		t.Errorf("a query wrote %s", out)
	}
	// Nothing changed, and the store still works.
	wantAuditEqual(t, audit(t, s, storage.AuditFilter{Limit: 1000}), before)
	if after := alertsOf(t, s, storage.AlertFilter{}); !slices.Equal(keys(after, alertKey), keys(alertsBefore, alertKey)) {
		t.Errorf("alerts after the refused queries = %v, want %v", keys(after, alertKey), keys(alertsBefore, alertKey))
	}
	if _, rows, _, err := RunQuery(t, s, "SELECT count(*) FROM entries", 10); err != nil || fmt.Sprint(rows[0][0]) != fmt.Sprint(len(before)) {
		t.Errorf("count after the refused queries = %v, %v; want %d", rows, err, len(before))
	}
}

func wantAuditEqual(t *testing.T, got, want []storage.AuditEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("audit holds %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("audit entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func rule(host, name, typ, severity, body string) storage.RuleRecord {
	return storage.RuleRecord{Host: host, Name: name, Type: typ, Severity: severity, Body: storage.RawJSON(body)}
}

func ruleKeys(rs []storage.RuleRecord) []string {
	return keys(rs, func(r storage.RuleRecord) string { return r.Host + "/" + r.Name })
}

func testRules(t *testing.T, s storage.Store) {
	if rs, err := s.Rules(t.Context(), ""); err != nil || len(rs) != 0 {
		t.Fatalf("Rules of an empty store = %v, %v", rs, err)
	}
	first := []storage.RuleRecord{
		rule("", "passwd", "file", "CRITICAL", `{"name":"passwd","type":"file","paths":["/etc/passwd"],"severity":"CRITICAL"}`),
		rule("web-1", "decoy", "file", "WARN", `{"name":"decoy","type":"file","paths":["/srv/decoy"],"severity":"WARN"}`),
		rule("", "shadow", "file", "CRITICAL", `{"name":"shadow","type":"file","paths":["/etc/shadow"],"severity":"CRITICAL"}`),
		rule("db-1", "passwd", "file", "INFO", `{"name":"passwd","type":"file","paths":["/etc/passwd"],"severity":"INFO"}`),
	}
	before := time.Now().Add(-time.Minute)
	c, err := s.PutRules(t.Context(), first)
	if err != nil {
		t.Fatalf("PutRules: %v", err)
	}
	if len(c.Added) != 4 || len(c.Changed) != 0 || len(c.Removed) != 0 {
		t.Errorf("first PutRules changes = %+v, want 4 added", c)
	}
	all, err := s.Rules(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ruleKeys(all), []string{"/passwd", "/shadow", "db-1/passwd", "web-1/decoy"}; !slices.Equal(got, want) {
		t.Fatalf("Rules = %v, want %v", got, want)
	}
	for _, r := range all {
		i := slices.IndexFunc(first, func(f storage.RuleRecord) bool { return f.Host == r.Host && f.Name == r.Name })
		if f := first[i]; r.Type != f.Type || r.Severity != f.Severity || string(r.Body) != string(f.Body) {
			t.Errorf("rule %s/%s = %+v, want %+v", r.Host, r.Name, r, f)
		}
		if r.UpdatedAt.Before(before) || r.UpdatedAt.Location() != time.UTC {
			t.Errorf("rule %s/%s updated_at %v, want now in UTC", r.Host, r.Name, r.UpdatedAt)
		}
	}
	web, err := s.Rules(t.Context(), "web-1")
	if err != nil || !slices.Equal(ruleKeys(web), []string{"/passwd", "/shadow", "web-1/decoy"}) {
		t.Errorf("Rules(web-1) = %v, %v; want the global rules and its own", ruleKeys(web), err)
	}

	// Replace all: one kept as it is, one changed, one added, two removed.
	second := []storage.RuleRecord{
		first[0],
		rule("web-1", "decoy", "file", "CRITICAL", `{"name":"decoy","type":"file","paths":["/srv/decoy"],"severity":"CRITICAL"}`),
		rule("", "aws", "file", "WARN", `{"name":"aws","type":"file","paths":["/root/.aws/credentials"],"severity":"WARN"}`),
	}
	c, err = s.PutRules(t.Context(), second)
	if err != nil {
		t.Fatalf("second PutRules: %v", err)
	}
	want := storage.RuleChanges{
		Added:   []storage.RuleKey{{Host: "", Name: "aws"}},
		Changed: []storage.RuleKey{{Host: "web-1", Name: "decoy"}},
		Removed: []storage.RuleKey{{Host: "", Name: "shadow"}, {Host: "db-1", Name: "passwd"}},
	}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("second PutRules changes = %+v, want %+v", c, want)
	}
	after, err := s.Rules(t.Context(), "")
	if err != nil || !slices.Equal(ruleKeys(after), []string{"/aws", "/passwd", "web-1/decoy"}) {
		t.Fatalf("Rules after replacing = %v, %v", ruleKeys(after), err)
	}
	if kept := after[1]; !kept.UpdatedAt.Equal(all[0].UpdatedAt) {
		t.Errorf("an unchanged rule's updated_at moved from %v to %v", all[0].UpdatedAt, kept.UpdatedAt)
	}
	if after[2].Severity != "CRITICAL" {
		t.Errorf("changed rule = %+v", after[2])
	}

	// A bad set is refused whole.
	for _, bad := range [][]storage.RuleRecord{
		{first[0], first[0]},
		{rule("", "", "file", "INFO", `{}`)},
		{rule("", "x", "file", "INFO", `["not an object"]`)},
		{rule("", "x\x00", "file", "INFO", `{}`)},
	} {
		if _, err := s.PutRules(t.Context(), bad); !errors.Is(err, storage.ErrInvalidRule) {
			t.Errorf("PutRules(%v) = %v, want ErrInvalidRule", ruleKeys(bad), err)
		}
	}
	if again, err := s.Rules(t.Context(), ""); err != nil || !slices.Equal(ruleKeys(again), ruleKeys(after)) {
		t.Errorf("Rules after refused sets = %v, %v; want %v", ruleKeys(again), err, ruleKeys(after))
	}
	// Replacing with nothing removes everything.
	if c, err := s.PutRules(t.Context(), nil); err != nil || len(c.Removed) != 3 {
		t.Errorf("PutRules(nil) = %+v, %v; want 3 removed", c, err)
	}
}
