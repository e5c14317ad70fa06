package ingest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// TestDegradedWatchersMakeTheHostDegraded: an agent registering with a watcher in a
// fallback mode makes its host DEGRADED with a WARN alert on the live stream and in the
// store; a heartbeat saying every watcher is back raises RESTORED; heartbeats that
// repeat the same report raise nothing.
func TestDegradedWatchersMakeTheHostDegraded(t *testing.T) {
	f := newFixture(t)
	sub := f.broker.Subscribe()
	defer sub.Close()
	fallback := []*tripwirev1.WatcherStatus{
		{Name: "file", Mode: "fsnotify", DegradedReason: "no reads, no actor"},
		{Name: "process", Mode: "ebpf"},
	}
	best := []*tripwirev1.WatcherStatus{{Name: "file", Mode: "fanotify"}, {Name: "process", Mode: "ebpf"}}
	a, err := f.registerWatchers(t, "web-7", nil, fallback)
	if err != nil {
		t.Fatal(err)
	}
	stream, hostID := a.stream, a.hostID
	next := func(want string) storage.Alert {
		t.Helper()
		select {
		case a := <-sub.C:
			if a.TripwireType != storage.TypeHost || a.RuleName != "watcher-health" || a.HostID != hostID {
				t.Fatalf("live alert = %+v, want a watcher-health alert for %s", a, hostID)
			}
			if string(a.EventDetail) == "" || !strings.Contains(string(a.EventDetail), want) {
				t.Fatalf("live alert detail = %s, want it to hold %q", a.EventDetail, want)
			}
			return a
		case <-time.After(5 * time.Second):
			t.Fatalf("no live alert holding %q", want)
			return storage.Alert{}
		}
	}
	degraded := next(`"kind":"DEGRADED"`)
	if degraded.Severity != "WARN" || !strings.Contains(string(degraded.EventDetail), "file: fsnotify (no reads, no actor)") {
		t.Errorf("DEGRADED alert = %+v", degraded)
	}
	wantStatus(t, f.store, hostID, storage.HostDegraded)

	heartbeat := func(ws []*tripwirev1.WatcherStatus) {
		t.Helper()
		if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Heartbeat{Heartbeat: &tripwirev1.Heartbeat{Watchers: ws}}}); err != nil {
			t.Fatal(err)
		}
	}
	heartbeat(fallback) // the same report: nothing new
	heartbeat(best)
	restored := next(`"kind":"RESTORED"`)
	if restored.Severity != "INFO" {
		t.Errorf("RESTORED alert = %+v", restored)
	}
	wantStatus(t, f.store, hostID, storage.HostOnline)
	alerts, err := f.store.Alerts(t.Context(), storage.AlertFilter{Type: storage.TypeHost})
	if err != nil || len(alerts) != 2 || alerts[0].AlertID != restored.AlertID || alerts[1].AlertID != degraded.AlertID {
		t.Fatalf("stored host alerts = %+v, %v; want RESTORED then DEGRADED, the live ones", alerts, err)
	}
}

func wantStatus(t *testing.T, s storage.Store, hostID, want string) {
	t.Helper()
	waitFor(t, "host "+hostID+" "+want, func() (bool, string) {
		hosts, err := s.Hosts(t.Context())
		for _, h := range hosts {
			if h.HostID == hostID && h.Status == want {
				return true, ""
			}
		}
		return false, fmt.Sprint(hosts, err)
	})
}

// TestBacklogFollowsHeartbeats: the backlog metric is the queue depth the agents of
// open streams last reported, and a stream that ends takes its share with it.
func TestBacklogFollowsHeartbeats(t *testing.T) {
	f := newFixture(t)
	a := f.connect(t, "web-8")
	b := f.connect(t, "web-9")
	beat := func(s *agentStream, depth uint64) {
		t.Helper()
		if err := s.stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Heartbeat{Heartbeat: &tripwirev1.Heartbeat{QueueDepth: depth}}}); err != nil {
			t.Fatal(err)
		}
	}
	wantBacklog := func(want float64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("backlog %v", want), func() (bool, string) {
			got := testutil.ToFloat64(f.metrics.Backlog)
			return got == want, fmt.Sprint(got)
		})
	}
	beat(a, 40)
	beat(b, 2)
	wantBacklog(42)
	beat(a, 10)
	wantBacklog(12)
	if err := a.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	wantBacklog(2)
}

// TestBatchesAreSignsOfLife: a host that sends batches is alive even when its heartbeats
// wait behind them in the stream: a stored batch moves last_seen, and brings back a host
// the dead-man switch marked OFFLINE.
func TestBatchesAreSignsOfLife(t *testing.T) {
	f := newFixture(t)
	a := f.connect(t, "busy-1")
	hostSeen := func() storage.Host {
		t.Helper()
		hs, err := f.store.Hosts(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if h.HostID == a.hostID {
				return h
			}
		}
		t.Fatalf("host %s not listed", a.hostID)
		return storage.Host{}
	}
	registered := hostSeen().LastSeen
	now := time.Now().UTC().Add(time.Second)
	if evs, err := f.store.MarkOffline(t.Context(), now, now); err != nil || len(evs) != 1 {
		t.Fatalf("MarkOffline = %+v, %v", evs, err)
	}
	time.Sleep(10 * time.Millisecond)
	if resp, err := a.send(t, events(storetest.NewChain(), 3)); err != nil || resp.GetAck().GetSeq() != 3 {
		t.Fatalf("batch: %v, %v", resp, err)
	}
	h := hostSeen()
	if !h.LastSeen.After(registered) || h.Status != storage.HostOnline {
		t.Errorf("after a batch: last_seen %v (registered %v), status %s; want later and ONLINE", h.LastSeen, registered, h.Status)
	}
}
