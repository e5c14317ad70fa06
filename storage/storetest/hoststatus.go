package storetest

import (
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// testDeadMan: a host silent since before the cut-off is marked OFFLINE once, with an
// event; a recent one is not; its return is an event too.
func testDeadMan(t *testing.T, s storage.Store) {
	ctx := t.Context()
	mustRegister(t, s, storage.Host{HostID: "h-quiet", Hostname: "quiet", Watchers: "[]", LastSeen: seen(0)})
	mustRegister(t, s, storage.Host{HostID: "h-alive", Hostname: "alive", Watchers: "[]", LastSeen: seen(time.Minute)})
	now := seen(time.Minute + time.Second)
	events, err := s.MarkOffline(ctx, seen(30*time.Second), now)
	if err != nil || len(events) != 1 || events[0].HostID != "h-quiet" || events[0].Kind != storage.HostOffline || events[0].Severity != "CRITICAL" || events[0].Hostname != "quiet" {
		t.Fatalf("MarkOffline = %+v, %v; want one OFFLINE event for h-quiet", events, err)
	}
	if again, err := s.MarkOffline(ctx, seen(30*time.Second), now); err != nil || len(again) != 0 {
		t.Fatalf("MarkOffline again = %+v, %v; want nothing (already OFFLINE)", again, err)
	}
	hosts, err := s.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, h := range hosts {
		status[h.HostID] = h.Status
	}
	if status["h-quiet"] != storage.HostOffline || status["h-alive"] != storage.HostOnline {
		t.Fatalf("statuses = %v", status)
	}
	back, ok, err := s.MarkOnline(ctx, "h-quiet", now.Add(time.Second))
	if err != nil || !ok || back.Kind != storage.HostOnline || back.HostID != "h-quiet" {
		t.Fatalf("MarkOnline = %+v, %v, %v", back, ok, err)
	}
	if _, ok, err := s.MarkOnline(ctx, "h-alive", now); err != nil || ok {
		t.Fatalf("MarkOnline of an ONLINE host = %v, %v; want no event", ok, err)
	}
	integrity := storage.NewHostEvent("h-alive", "alive", storage.HostIntegrity, now.Add(2*time.Second), now)
	integrity.Message = "the agent's chain does not extend the stored one"
	for i, want := range []bool{true, false} { // the second is the same event again
		if added, err := s.AddHostEvent(ctx, integrity); err != nil || added != want {
			t.Fatalf("AddHostEvent #%d = %v, %v; want %v", i+1, added, err, want)
		}
	}
	got, err := s.HostEvents(ctx, time.Time{}, time.Time{}, 0)
	if err != nil || len(got) != 3 || got[0] != integrity || got[1].Kind != storage.HostOnline || got[2].Kind != storage.HostOffline || !got[2].Time.Equal(now) {
		t.Fatalf("HostEvents = %+v, %v; want INTEGRITY, ONLINE, OFFLINE, newest first", got, err)
	}
	if got, err := s.HostEvents(ctx, now.Add(time.Second), now.Add(2*time.Second), 0); err != nil || len(got) != 1 || got[0].Kind != storage.HostOnline {
		t.Fatalf("HostEvents in [now+1s, now+2s) = %+v, %v; want the ONLINE event only", got, err)
	}
}
