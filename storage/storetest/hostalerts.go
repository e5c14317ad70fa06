package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// testHostEventAlerts: the events the collector raises about hosts are alerts: listed
// with the event entries' alerts, newest first, filtered, searched, counted and triaged
// like them, each reading as HostEvent.Alert does on the live stream.
func testHostEventAlerts(t *testing.T, s storage.Store) {
	ctx := t.Context()
	web := hostWeb()
	web.LastSeen = seen(0)
	mustRegister(t, s, web)
	c := NewChain()
	entry := c.Event(at(time.Second), fileEvent("passwd", "CRITICAL", "/etc/passwd", 4242))
	// Host events carry the collector's times, to the microsecond (seen).
	mustAppend(t, s, web.HostID, entry)

	offline, err := s.MarkOffline(ctx, seen(time.Minute), seen(2*time.Second))
	if err != nil || len(offline) != 1 {
		t.Fatalf("MarkOffline = %+v, %v", offline, err)
	}
	integrity := storage.NewHostEvent(web.HostID, web.Hostname, storage.HostIntegrity, seen(3*time.Second), seen(3*time.Second))
	integrity.Message = "the agent's chain <seq 7> does not extend the stored one & more"
	if added, err := s.AddHostEvent(ctx, integrity); err != nil || !added {
		t.Fatalf("AddHostEvent = %v, %v", added, err)
	}

	all := alertsOf(t, s, storage.AlertFilter{})
	if len(all) != 3 {
		t.Fatalf("Alerts = %d alerts, want 3 (two host events and one entry): %+v", len(all), all)
	}
	wantHostAlert(t, all[0], integrity)
	wantHostAlert(t, all[1], offline[0])
	if all[2].TripwireType != "FILE" || all[2].Seq != entry.Seq {
		t.Fatalf("third alert = %+v, want the entry's", all[2])
	}

	for _, c := range []struct {
		name string
		f    storage.AlertFilter
		want []string // alert ids, newest first
	}{
		{"type HOST", storage.AlertFilter{Type: storage.TypeHost}, []string{integrity.EventID, offline[0].EventID}},
		{"type FILE", storage.AlertFilter{Type: "FILE"}, []string{all[2].AlertID}},
		{"rule", storage.AlertFilter{Rule: "dead-man"}, []string{offline[0].EventID}},
		{"severity", storage.AlertFilter{Severity: "CRITICAL", Type: storage.TypeHost}, []string{integrity.EventID, offline[0].EventID}},
		{"host by name", storage.AlertFilter{Host: web.Hostname, Type: storage.TypeHost}, []string{integrity.EventID, offline[0].EventID}},
		{"other host", storage.AlertFilter{Host: "db-01"}, nil},
		{"text in the message", storage.AlertFilter{Text: "WENT SILENT"}, []string{offline[0].EventID}},
		{"text with markup", storage.AlertFilter{Text: "<seq 7>"}, []string{integrity.EventID}},
		{"time range", storage.AlertFilter{From: seen(2 * time.Second), To: seen(3 * time.Second)}, []string{offline[0].EventID}},
		{"paging", storage.AlertFilter{Limit: 1, Offset: 1}, []string{offline[0].EventID}},
	} {
		got := keys(alertsOf(t, s, c.f), func(a storage.Alert) string { return a.AlertID })
		if !equalStrings(got, c.want) {
			t.Errorf("%s: alerts %v, want %v", c.name, got, c.want)
		}
	}

	triaged, err := s.SetTriage(ctx, offline[0].EventID, storage.TriageAcknowledged, "analyst@example.com", "rebooted for patching")
	if err != nil {
		t.Fatalf("SetTriage of a host event's alert: %v", err)
	}
	if triaged.TriageStatus != storage.TriageAcknowledged || triaged.TriageBy != "analyst@example.com" || triaged.TriageNote != "rebooted for patching" || triaged.TriageAt == nil {
		t.Errorf("triaged alert = %+v", triaged)
	}
	wantHostAlert(t, storage.Alert{AlertID: triaged.AlertID, Host: triaged.Host, HostID: triaged.HostID, Seq: triaged.Seq,
		Timestamp: triaged.Timestamp, TripwireType: triaged.TripwireType, RuleName: triaged.RuleName, Severity: triaged.Severity,
		EventDetail: triaged.EventDetail, TriageStatus: storage.TriageOpen}, offline[0])
	if got := keys(alertsOf(t, s, storage.AlertFilter{Status: storage.TriageAcknowledged}), func(a storage.Alert) string { return a.AlertID }); !equalStrings(got, []string{offline[0].EventID}) {
		t.Errorf("acknowledged alerts = %v, want the OFFLINE event's", got)
	}
	if got := keys(alertsOf(t, s, storage.AlertFilter{Status: storage.TriageOpen}), func(a storage.Alert) string { return a.AlertID }); !equalStrings(got, []string{integrity.EventID, all[2].AlertID}) {
		t.Errorf("open alerts = %v, want the INTEGRITY event's and the entry's", got)
	}

	from := at(0).UTC().Truncate(time.Hour)
	to := from.Add(time.Hour)
	byType := counts(t, s, storage.CountFilter{Alert: storage.AlertFilter{From: from, To: to}, Interval: time.Hour, GroupBy: storage.GroupByType})
	wantCounts(t, byType, []storage.CountBucket{{Time: from, Key: "FILE", Count: 1}, {Time: from, Key: storage.TypeHost, Count: 2}})
	byRule := counts(t, s, storage.CountFilter{Alert: storage.AlertFilter{From: from, To: to, Status: storage.TriageOpen}, Interval: time.Hour, GroupBy: storage.GroupByRule})
	wantCounts(t, byRule, []storage.CountBucket{{Time: from, Key: "chain-integrity", Count: 1}, {Time: from, Key: "passwd", Count: 1}})
	byHost := counts(t, s, storage.CountFilter{Alert: storage.AlertFilter{From: from, To: to, Type: storage.TypeHost}, Interval: time.Hour, GroupBy: storage.GroupByHost})
	wantCounts(t, byHost, []storage.CountBucket{{Time: from, Key: web.Hostname, Count: 2}})
}

// wantHostAlert checks that a stored alert reads as the event's live alert.
func wantHostAlert(t *testing.T, got storage.Alert, ev storage.HostEvent) {
	t.Helper()
	want := ev.Alert()
	if got.AlertID != want.AlertID || got.HostID != want.HostID || got.Host != want.Host || got.Seq != 0 ||
		got.TripwireType != storage.TypeHost || got.RuleName != want.RuleName || got.Severity != want.Severity ||
		got.TriageStatus != storage.TriageOpen {
		t.Errorf("host event alert = %+v, want %+v", got, want)
	}
	wantTime(t, "host event alert time", got.Timestamp, ev.Time)
	if string(got.EventDetail) != string(want.EventDetail) {
		t.Errorf("host event alert detail = %s, want exactly %s", got.EventDetail, want.EventDetail)
	}
}

// testHostHealth: what an agent says of its watchers makes its host DEGRADED, raising
// one event when it starts and one when it ends; OFFLINE wins over DEGRADED.
func testHostHealth(t *testing.T, s storage.Store) {
	ctx := t.Context()
	if _, _, err := s.SetHostHealth(ctx, "h-nobody", "[]", "", seen(0)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetHostHealth of an unknown host = %v, want ErrNotFound", err)
	}
	web := hostWeb()
	web.LastSeen = seen(0)
	mustRegister(t, s, web)
	status := func() storage.Host {
		t.Helper()
		for _, h := range hosts(t, s) {
			if h.HostID == web.HostID {
				return h
			}
		}
		t.Fatalf("host %s not listed", web.HostID)
		return storage.Host{}
	}
	if h := status(); h.Status != storage.HostOnline || h.Degraded != "" {
		t.Fatalf("new host: status %q, degraded %q", h.Status, h.Degraded)
	}
	const fsnotify = `[{"name":"file","mode":"fsnotify","degraded_reason":"no reads, no actor"}]`
	steps := []struct {
		watchers, degraded string
		wantKind           string // "" for no event
		wantStatus         string
	}{
		{`[{"name":"file","mode":"fanotify"}]`, "", "", storage.HostOnline},
		{fsnotify, "file: fsnotify (no reads, no actor)", storage.HostDegraded, storage.HostDegraded},
		{fsnotify, "file: fsnotify (no reads, no actor)", "", storage.HostDegraded},
		{fsnotify, "file: fsnotify (no reads, no actor); process: proc", "", storage.HostDegraded},
		{`[{"name":"file","mode":"fanotify"}]`, "", storage.HostRestored, storage.HostOnline},
		{fsnotify, "file: fsnotify (no reads, no actor)", storage.HostDegraded, storage.HostDegraded},
	}
	for i, st := range steps {
		ev, changed, err := s.SetHostHealth(ctx, web.HostID, st.watchers, st.degraded, seen(time.Duration(i+1)*time.Second))
		if err != nil {
			t.Fatalf("step %d: SetHostHealth: %v", i, err)
		}
		if changed != (st.wantKind != "") || (changed && (ev.Kind != st.wantKind || ev.HostID != web.HostID || ev.Hostname != web.Hostname)) {
			t.Fatalf("step %d: SetHostHealth = %+v, %v; want event %q", i, ev, changed, st.wantKind)
		}
		if changed && st.wantKind == storage.HostDegraded && (ev.Severity != "WARN" || !strings.Contains(ev.Message, st.degraded)) {
			t.Errorf("step %d: DEGRADED event %+v should be WARN and name %q", i, ev, st.degraded)
		}
		h := status()
		if h.Status != st.wantStatus || h.Degraded != st.degraded || h.Watchers != st.watchers {
			t.Fatalf("step %d: host status %q degraded %q watchers %s; want %q %q %s", i, h.Status, h.Degraded, h.Watchers, st.wantStatus, st.degraded, st.watchers)
		}
	}
	if got := alertsOf(t, s, storage.AlertFilter{Rule: "watcher-health"}); len(got) != 3 || got[0].Severity != "WARN" || got[1].Severity != "INFO" {
		t.Errorf("watcher-health alerts = %+v, want DEGRADED, RESTORED, DEGRADED (newest first)", got)
	}
	if _, err := s.MarkOffline(ctx, seen(time.Hour), seen(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if h := status(); h.Status != storage.HostOffline || h.Degraded == "" {
		t.Errorf("silent degraded host: status %q degraded %q, want OFFLINE and the reason kept", h.Status, h.Degraded)
	}
	if _, ok, err := s.MarkOnline(ctx, web.HostID, seen(2*time.Hour)); err != nil || !ok {
		t.Fatalf("MarkOnline = %v, %v", ok, err)
	}
	if h := status(); h.Status != storage.HostDegraded {
		t.Errorf("returned degraded host: status %q, want DEGRADED", h.Status)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
