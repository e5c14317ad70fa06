package storetest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
)

// expected is an alert the suite stored, as it must come back.
type expected struct {
	host  storage.Host
	entry batch.Entry
	event chain.Event
}

func (x expected) key() string { return fmt.Sprintf("%s/%d", x.host.HostID, x.entry.Seq) }

func alertKey(a storage.Alert) string { return fmt.Sprintf("%s/%d", a.HostID, a.Seq) }

func alertsOf(t *testing.T, s storage.Store, f storage.AlertFilter) []storage.Alert {
	t.Helper()
	as, err := s.Alerts(t.Context(), f)
	if err != nil {
		t.Fatalf("Alerts(%+v): %v", f, err)
	}
	return as
}

// alertFixture stores two hosts' chains mixing events and other entries, and returns
// the alerts they record, newest first. No two alerts share (time, seq), so the order is
// fully defined. db's first alert is one nanosecond newer than web's first, which has
// the higher seq: only a backend that orders by the whole nanosecond puts db's first.
func alertFixture(t *testing.T, s storage.Store) (web, db storage.Host, want []expected) {
	t.Helper()
	web, db = hostWeb(), hostDB()
	mustRegister(t, s, web)
	mustRegister(t, s, db)
	var xs []expected
	add := func(h storage.Host, c *Chain, ts time.Time, ev chain.Event) batch.Entry {
		e := c.Event(ts, ev)
		xs = append(xs, expected{host: h, entry: e, event: ev})
		return e
	}
	w := NewChain()
	mustAppend(t, s, web.HostID,
		w.Notice(at(0), chain.KindAgent, chain.Notice{What: "agent_started"}),
		add(web, w, at(1*time.Second), fileEvent("passwd-read", chain.SeverityCritical, "/etc/passwd", 4001)),
		add(web, w, at(2*time.Second), netEvent("ssh-honeypot", chain.SeverityWarn, 4002)),
		add(web, w, at(3*time.Second), procEvent("netcat", chain.SeverityCritical, 4003)),
		add(web, w, at(3*time.Second), fileEvent("decoy-read", chain.SeverityInfo, "/srv/decoy.txt", 4004)),
		w.Notice(at(3500*time.Millisecond), chain.KindGap, chain.Notice{What: "events_lost", Lost: 3}),
	)
	d := NewChain()
	mustAppend(t, s, db.HostID,
		add(db, d, at(time.Second+1), fileEvent("shadow-read", chain.SeverityCritical, "/etc/shadow", 5000)),
		add(db, d, at(1500*time.Millisecond), fileEvent("aws-credentials", chain.SeverityWarn, "/root/.aws/credentials", 5001)),
		add(db, d, at(2500*time.Millisecond), procEvent("netcat", chain.SeverityInfo, 5002)),
		d.Anchor(at(2600*time.Millisecond), chain.Anchor{PrevSegment: "00000001.seg", PrevSeq: 2, PrevHash: strings.Repeat("b", 64)}),
		add(db, d, at(4*time.Second), fileEvent("passwd-read", chain.SeverityCritical, "/etc/passwd", 5004)),
	)
	slices.SortFunc(xs, func(a, b expected) int {
		if c := b.entry.Time.Compare(a.entry.Time); c != 0 {
			return c
		}
		return int(b.entry.Seq) - int(a.entry.Seq)
	})
	return web, db, xs
}

func wantAlerts(t *testing.T, got []storage.Alert, want []expected) {
	t.Helper()
	if g, w := keys(got, alertKey), keys(want, expected.key); !slices.Equal(g, w) {
		t.Fatalf("alerts = %v, want %v", g, w)
	}
	for i, x := range want {
		a := got[i]
		if a.AlertID != storage.AlertID(x.host.HostID, x.entry.Seq) || a.Host != x.host.Hostname ||
			a.TripwireType != x.event.Type || a.RuleName != x.event.Rule || a.Severity != x.event.Severity {
			t.Errorf("alert %s = {%s %s %s %s %s}, want {%s %s %s %s %s}", x.key(),
				a.AlertID, a.Host, a.TripwireType, a.RuleName, a.Severity,
				storage.AlertID(x.host.HostID, x.entry.Seq), x.host.Hostname, x.event.Type, x.event.Rule, x.event.Severity)
		}
		wantTime(t, "alert "+x.key()+" timestamp", a.Timestamp, x.entry.Time)
		wantEventDetail(t, a, x.event)
	}
}

// wantEventDetail checks that the alert's event_detail decodes to the event stored. It
// compares decoded values, not text: a backend may re-encode JSON.
func wantEventDetail(t *testing.T, a storage.Alert, want chain.Event) {
	t.Helper()
	var got chain.Event
	if err := json.Unmarshal(a.EventDetail, &got); err != nil {
		t.Errorf("alert %s: event_detail %q does not decode: %v", alertKey(a), a.EventDetail, err)
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("alert %s: event_detail decodes to\n %+v\nwant\n %+v", alertKey(a), got, want)
	}
}

func testAlertFilters(t *testing.T, s storage.Store) {
	web, db, all := alertFixture(t, s)
	west := time.FixedZone("UTC-07:00", -7*3600)
	cases := []struct {
		name string
		f    storage.AlertFilter
		keep func(x expected) bool
	}{
		{"none", storage.AlertFilter{}, func(expected) bool { return true }},
		{"host by name", storage.AlertFilter{Host: web.Hostname}, func(x expected) bool { return x.host.HostID == web.HostID }},
		{"host by id", storage.AlertFilter{Host: db.HostID}, func(x expected) bool { return x.host.HostID == db.HostID }},
		{"unknown host", storage.AlertFilter{Host: "nobody"}, func(expected) bool { return false }},
		{"type", storage.AlertFilter{Type: chain.TypeFile}, func(x expected) bool { return x.event.Type == chain.TypeFile }},
		{"severity", storage.AlertFilter{Severity: chain.SeverityCritical}, func(x expected) bool { return x.event.Severity == chain.SeverityCritical }},
		{"from inclusive, to exclusive", storage.AlertFilter{From: at(2 * time.Second), To: at(3 * time.Second)},
			within(at(2*time.Second), at(3*time.Second))},
		{"from only, in UTC", storage.AlertFilter{From: at(3 * time.Second).UTC()}, within(at(3*time.Second), time.Time{})},
		{"to only, in another zone", storage.AlertFilter{To: at(1500 * time.Millisecond).In(west)},
			within(time.Time{}, at(1500*time.Millisecond))},
		// Stored times are 789 ns past their microsecond: a backend that rounds bounds or
		// times to the microsecond, up or down, fails at least one of the next three.
		{"bounds a nanosecond past", storage.AlertFilter{From: at(time.Second + 1), To: at(3*time.Second + 1)},
			within(at(time.Second+1), at(3*time.Second+1))},
		{"bounds within the microsecond below", storage.AlertFilter{From: at(time.Second - 100), To: at(3*time.Second - 100)},
			within(at(time.Second-100), at(3*time.Second-100))},
		{"one nanosecond", storage.AlertFilter{From: at(time.Second), To: at(time.Second + 1)},
			within(at(time.Second), at(time.Second+1))},
		{"bounds beyond the stored years", storage.AlertFilter{From: time.Date(1200, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(3000, 1, 1, 0, 0, 0, 0, west)},
			func(expected) bool { return true }},
		{"from beyond the stored years", storage.AlertFilter{From: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
			func(expected) bool { return false }},
		{"to before the stored years", storage.AlertFilter{To: time.Date(1200, 1, 1, 0, 0, 0, 0, time.UTC)},
			func(expected) bool { return false }},
		{"host, type and severity", storage.AlertFilter{Host: web.Hostname, Type: chain.TypeFile, Severity: chain.SeverityCritical},
			func(x expected) bool {
				return x.host.HostID == web.HostID && x.event.Type == chain.TypeFile && x.event.Severity == chain.SeverityCritical
			}},
		{"no match", storage.AlertFilter{Host: db.Hostname, Type: chain.TypeNetwork}, func(expected) bool { return false }},
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
}

// within keeps alerts whose event time is in [from, to), a zero bound not bounding.
func within(from, to time.Time) func(x expected) bool {
	return func(x expected) bool {
		ts := x.entry.Time
		return (from.IsZero() || !ts.Before(from)) && (to.IsZero() || ts.Before(to))
	}
}

func testAlertPaging(t *testing.T, s storage.Store) {
	_, _, all := alertFixture(t, s)
	var paged []storage.Alert
	for off := 0; off < len(all)+2; off += 2 {
		paged = append(paged, alertsOf(t, s, storage.AlertFilter{Limit: 2, Offset: off})...)
	}
	wantAlerts(t, paged, all)
	wantAlerts(t, alertsOf(t, s, storage.AlertFilter{Limit: 3, Offset: 2}), all[2:5])
	wantAlerts(t, alertsOf(t, s, storage.AlertFilter{Offset: len(all)}), nil)
}

func testLimitBounds(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	c := NewChain()
	es := make([]batch.Entry, 1005)
	for i := range es {
		es[i] = c.Event(at(time.Duration(i)*time.Millisecond), fileEvent("passwd-read", chain.SeverityCritical, "/etc/passwd", int32(i+1)))
	}
	mustAppend(t, s, h.HostID, es...)
	for _, tc := range []struct {
		limit, want int
	}{{0, 100}, {1, 1}, {1000, 1000}, {5000, 1000}} {
		as := alertsOf(t, s, storage.AlertFilter{Limit: tc.limit})
		if len(as) != tc.want {
			t.Errorf("Alerts with limit %d returned %d alerts, want %d", tc.limit, len(as), tc.want)
		} else if as[0].Seq != 1005 || as[len(as)-1].Seq != uint64(1005-tc.want+1) {
			t.Errorf("Alerts with limit %d returned seqs %d..%d, want the newest: 1005..%d", tc.limit, as[0].Seq, as[len(as)-1].Seq, 1005-tc.want+1)
		}
		au := audit(t, s, storage.AuditFilter{Limit: tc.limit})
		if len(au) != tc.want {
			t.Errorf("Audit with limit %d returned %d entries, want %d", tc.limit, len(au), tc.want)
		} else if au[0].Seq != 1 {
			t.Errorf("Audit with limit %d starts at seq %d, want 1", tc.limit, au[0].Seq)
		}
	}
}

func testEventDetail(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	ev := fileEvent("passwd-read", chain.SeverityCritical, "/etc/passwd", 4242)
	ev.Missing = []string{"ppid"}
	mustAppend(t, s, h.HostID, NewChain().Event(at(0), ev))
	as := alertsOf(t, s, storage.AlertFilter{})
	if len(as) != 1 {
		t.Fatalf("Alerts returned %d alerts, want 1", len(as))
	}
	wantEventDetail(t, as[0], ev)
	// The fields an analyst reads first, by their wire names.
	var m map[string]any
	if err := json.Unmarshal(as[0].EventDetail, &m); err != nil {
		t.Fatalf("event_detail: %v", err)
	}
	for k, want := range map[string]any{"pid": 4242.0, "user": "deploy", "path": "/etc/passwd", "op": "read", "uid": 1001.0} {
		if m[k] != want {
			t.Errorf("event_detail[%q] = %v, want %v", k, m[k], want)
		}
	}
	// The alert serialises with the detail as an object, not a string.
	out, err := json.Marshal(as[0])
	if err != nil {
		t.Fatalf("marshalling alert: %v", err)
	}
	if !strings.Contains(string(out), `"event_detail":{`) {
		t.Errorf("alert JSON %s does not carry event_detail as an object", out)
	}
}

func testStableID(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	es := run(NewChain(), 12, at(0))
	mustAppend(t, s, h.HostID, es...)
	before := alertsOf(t, s, storage.AlertFilter{})
	seen := map[string]bool{}
	for _, a := range before {
		if a.AlertID != storage.AlertID(h.HostID, a.Seq) {
			t.Errorf("seq %d: alert id %s, want storage.AlertID = %s", a.Seq, a.AlertID, storage.AlertID(h.HostID, a.Seq))
		}
		if seen[a.AlertID] {
			t.Errorf("alert id %s appears twice", a.AlertID)
		}
		seen[a.AlertID] = true
	}
	mustAppend(t, s, h.HostID, es[3:]...)
	after := alertsOf(t, s, storage.AlertFilter{})
	idOf := func(a storage.Alert) string { return a.AlertID }
	if g, w := keys(after, idOf), keys(before, idOf); !slices.Equal(g, w) {
		t.Errorf("alert ids after a resend = %v, want %v", g, w)
	}
}
