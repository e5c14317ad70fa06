package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/agent/transport/transporttest"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/internal/testwait"
	"github.com/tripwire-project/tripwire/proto/batch"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/fleet"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// runningAgent is the real agent shipper sending a transporttest.MemChain.
type runningAgent struct {
	chain  *transporttest.MemChain
	cancel context.CancelFunc
	done   chan struct{}
}

// startAgent ships c to the collector with the certificate hc until stopped (at the
// latest when the test ends).
func (f *fixture) startAgent(t *testing.T, hc pki.HostCert, c *transporttest.MemChain) *runningAgent {
	t.Helper()
	cl, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	sh := transport.New(c, transport.Options{
		Address: f.addr, TLS: cl.Config(), Hostname: hc.Hostname, BatchSize: 4,
		Heartbeat: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	a := &runningAgent{chain: c, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(a.done); sh.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

func (a *runningAgent) stop() { a.cancel(); <-a.done }

// waitFor polls cond until it holds, failing the test with what it last saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, what, cond)
}

// waitStored waits until the store holds want under id, contiguously from seq 1, and
// the agent holding it has had all of it acked.
func (f *fixture) waitStored(t *testing.T, id string, a *runningAgent) {
	t.Helper()
	want := a.chain.All()
	last := want[len(want)-1]
	waitFor(t, fmt.Sprintf("chain %s stored and acked up to seq %d", id, last.Seq), func() (bool, string) {
		seq, hash, err := f.store.Head(context.Background(), id)
		acked := a.chain.Acked()
		return err == nil && seq == last.Seq && hash == last.Hash && acked == last.Seq, fmt.Sprintf("head %d (%v), acked %d", seq, err, acked)
	})
}

// wantChain checks that the store holds exactly entries under id.
func (f *fixture) wantChain(t *testing.T, id string, entries []batch.Entry) {
	t.Helper()
	got, err := f.store.Audit(context.Background(), storage.AuditFilter{Host: id, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var mine []storage.AuditEntry
	for _, e := range got {
		if e.HostID == id {
			mine = append(mine, e)
		}
	}
	if len(mine) != len(entries) {
		t.Fatalf("chain %s holds %d entries, want %d", id, len(mine), len(entries))
	}
	for i, e := range entries {
		if mine[i].Seq != e.Seq || mine[i].Hash != e.Hash || mine[i].Payload != string(e.Payload) {
			t.Fatalf("chain %s entry %d = seq %d hash %s, want seq %d hash %s", id, i, mine[i].Seq, mine[i].Hash, e.Seq, e.Hash)
		}
	}
}

// integrity returns the INTEGRITY host events recorded.
func (f *fixture) integrity(t *testing.T) []storage.HostEvent {
	t.Helper()
	evs, err := f.store.HostEvents(context.Background(), time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.HostEvent
	for _, ev := range evs {
		if ev.Kind == storage.HostIntegrity {
			out = append(out, ev)
		}
	}
	return out
}

func (f *fixture) host(t *testing.T, id string) (storage.Host, bool) {
	t.Helper()
	hs, err := f.store.Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.HostID == id {
			return h, true
		}
	}
	return storage.Host{}, false
}

// forkCase is an agent chain that departs from the stored one.
type forkCase struct {
	name string
	// depart returns the departing agent's chain, given the chain stored for the host.
	depart func(stored []batch.Entry) []batch.Entry
	k      uint64 // first seq where it departs
	// truncated: the departing chain is a prefix of the stored one, and departs only
	// once it grows.
	truncated bool
}

var forkCases = []forkCase{
	{
		name:   "wiped agent",
		depart: func([]batch.Entry) []batch.Entry { return events(storetest.NewChain(), 5) },
		k:      1,
	},
	{
		name: "rewritten log",
		depart: func(s []batch.Entry) []batch.Entry {
			return append(slices.Clone(s[:6]), events(storetest.ChainAfter(s[5]), 6)...)
		},
		k: 7,
	},
	{
		// Two agents with one certificate: a cloned machine runs on from the point it
		// was copied, beside the original.
		name: "two agents on one certificate",
		depart: func(s []batch.Entry) []batch.Entry {
			return append(slices.Clone(s[:4]), events(storetest.ChainAfter(s[3]), 3)...)
		},
		k: 5,
	},
	{
		name:      "truncated chain that grows",
		depart:    func(s []batch.Entry) []batch.Entry { return slices.Clone(s[:6]) },
		k:         7,
		truncated: true,
	},
}

// An agent chain that departs from the one stored for its host is stored as a fork of
// the host, complete from seq 1, acked, flagged in the alerts, and raised as one
// CRITICAL INTEGRITY event; the host's own chain is untouched, and the host's agent
// keeps working beside it.
func TestDepartingChainIsKeptAsAFork(t *testing.T) {
	for _, c := range forkCases {
		t.Run(c.name, func(t *testing.T) { testFork(t, newFixture(t), c) })
	}
}

// The same, on ClickHouse and PostgreSQL.
func TestDepartingChainIsKeptAsAForkFleet(t *testing.T) {
	for _, c := range []forkCase{forkCases[0], forkCases[2]} {
		t.Run(c.name, func(t *testing.T) {
			ch := testservers.ClickHouse(t)
			store, err := fleet.Open(t.Context(), fleet.Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: testservers.PostgreSQL(t)})
			if err != nil {
				t.Fatal(err)
			}
			testFork(t, newFixtureOn(t, store), c)
		})
	}
}

func testFork(t *testing.T, f *fixture, c forkCase) {
	ctx := context.Background()
	hc, err := pki.Issue(f.pkiDir, "web-09", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sub := f.broker.Subscribe()
	defer sub.Close()
	stored := events(storetest.NewChain(), 10)
	host := f.startAgent(t, hc, transporttest.NewMemChain(stored))
	f.waitStored(t, hc.HostID, host)

	departing := c.depart(stored)
	other := f.startAgent(t, hc, transporttest.NewMemChain(departing))
	if c.truncated {
		// Nothing to store yet: the truncation is raised, and the agent's next entry
		// starts the fork.
		waitFor(t, "the truncation event", func() (bool, string) {
			evs := f.integrity(t)
			return len(evs) == 1, fmt.Sprint(evs)
		})
		if want := storage.TruncationEvent(hc.HostID, "web-09", hc.HostID, 6, stored[5].Hash, 10, time.Time{}); f.integrity(t)[0].EventID != want.EventID {
			t.Errorf("truncation event id %s, want %s", f.integrity(t)[0].EventID, want.EventID)
		}
		other.chain.Add(events(storetest.ChainAfter(departing[5]), 2)...)
		departing = other.chain.All()
	}
	forkID := storage.ForkID(hc.HostID, c.k, departing[c.k-1].Hash)
	f.waitStored(t, forkID, other)

	// Both keep going, each on its own chain.
	host.chain.Add(events(storetest.ChainAfter(stored[len(stored)-1]), 3)...)
	other.chain.Add(events(storetest.ChainAfter(departing[len(departing)-1]), 2)...)
	f.waitStored(t, hc.HostID, host)
	f.waitStored(t, forkID, other)
	f.wantChain(t, hc.HostID, host.chain.All())
	f.wantChain(t, forkID, other.chain.All())

	fork, ok := f.host(t, forkID)
	if !ok || fork.ForkOf != hc.HostID || fork.ForkSeq != c.k || fork.Hostname != "web-09" {
		t.Errorf("fork's host row = %+v (found %v), want fork_of %s fork_seq %d host web-09", fork, ok, hc.HostID, c.k)
	}
	if h, _ := f.host(t, hc.HostID); h.ForkOf != "" || h.HeadSeq != 13 {
		t.Errorf("host row = %+v, want no fork_of and head 13", h)
	}
	alerts, err := f.store.Alerts(ctx, storage.AlertFilter{Host: "web-09", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	hostAlerts := 0 // the integrity events, which are alerts too
	for _, a := range alerts {
		if a.TripwireType == storage.TypeHost {
			hostAlerts++
			continue
		}
		want := ""
		if a.HostID == forkID {
			want = hc.HostID
		}
		if a.ForkOf != want {
			t.Errorf("alert %s/%d fork_of = %q, want %q", a.HostID, a.Seq, a.ForkOf, want)
		}
		counts[a.HostID]++
	}
	if counts[hc.HostID] != 13 || counts[forkID] != len(other.chain.All()) {
		t.Errorf("alerts per chain = %v, want %d for the host and %d for the fork", counts, 13, len(other.chain.All()))
	}
	evs := f.integrity(t)
	if hostAlerts != len(evs) {
		t.Errorf("%d HOST alerts for web-09, want one per integrity event (%d)", hostAlerts, len(evs))
	}
	forkEvent := storage.ForkEvent(hc.HostID, "web-09", hc.HostID, forkID, c.k, time.Time{})
	var forkEvents int
	for _, ev := range evs {
		if ev.EventID == forkEvent.EventID {
			forkEvents++
			if ev.Severity != "CRITICAL" || ev.HostID != hc.HostID || ev.Hostname != "web-09" {
				t.Errorf("fork event = %+v", ev)
			}
		}
	}
	wantEvents := 1
	if c.truncated {
		wantEvents = 2 // the truncation, then the fork
	}
	if forkEvents != 1 || len(evs) != wantEvents {
		t.Errorf("integrity events = %+v, want the fork's once (%d in all)", evs, wantEvents)
	}
	// Live: every alert of either chain once, a fork's flagged; and the events.
	seen := map[string]int{}
	timeout := time.After(5 * time.Second)
	for len(seen) < 13+len(other.chain.All())+wantEvents {
		select {
		case a := <-sub.C:
			seen[a.AlertID]++
			if a.HostID == forkID && a.ForkOf != hc.HostID {
				t.Errorf("live alert %s/%d of the fork has fork_of %q", a.HostID, a.Seq, a.ForkOf)
			}
		case <-timeout:
			t.Fatalf("live alerts seen: %v", seen)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("live alert %s published %d times", k, n)
		}
	}
}

// A forked agent that reconnects continues the same fork, storing nothing twice and
// raising no second event; a second clone of the fork becomes a fork of the fork.
func TestForkedAgentReconnectsToItsFork(t *testing.T) {
	f := newFixture(t)
	hc, err := pki.Issue(f.pkiDir, "web-10", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored := events(storetest.NewChain(), 6)
	host := f.startAgent(t, hc, transporttest.NewMemChain(stored))
	f.waitStored(t, hc.HostID, host)
	host.stop()

	wiped := transporttest.NewMemChain(events(storetest.NewChain(), 3))
	a := f.startAgent(t, hc, wiped)
	forkID := storage.ForkID(hc.HostID, 1, wiped.All()[0].Hash)
	f.waitStored(t, forkID, a)
	a.stop()
	sub := f.broker.Subscribe()
	defer sub.Close()
	for _, n := range []int{1, 5} { // behind the host's head, then ahead of it
		wiped.Add(events(storetest.ChainAfter(wiped.All()[len(wiped.All())-1]), n)...)
		a = f.startAgent(t, hc, wiped)
		f.waitStored(t, forkID, a)
		a.stop()
	}
	f.wantChain(t, forkID, wiped.All())
	f.wantChain(t, hc.HostID, stored)
	if evs := f.integrity(t); len(evs) != 1 {
		t.Errorf("integrity events = %+v, want one", evs)
	}
	for want := uint64(4); want <= 9; want++ { // only what the reconnections added
		select {
		case al := <-sub.C:
			if al.HostID != forkID || al.Seq != want {
				t.Fatalf("live alert %s/%d, want %s/%d", al.HostID, al.Seq, forkID, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("live alert %d not published", want)
		}
	}
	select {
	case al := <-sub.C:
		t.Fatalf("alert published twice: %s/%d", al.HostID, al.Seq)
	default:
	}

	// A copy of the forked agent's chain, taken at seq 6, runs on by itself.
	clone := transporttest.NewMemChain(append(wiped.All()[:6], events(storetest.ChainAfter(wiped.All()[5]), 2)...))
	c := f.startAgent(t, hc, clone)
	nested := storage.ForkID(forkID, 7, clone.All()[6].Hash)
	f.waitStored(t, nested, c)
	if h, _ := f.host(t, nested); h.ForkOf != forkID || h.ForkSeq != 7 {
		t.Errorf("fork of the fork = %+v, want fork_of %s fork_seq 7", h, forkID)
	}
	f.wantChain(t, forkID, wiped.All())
	if evs := f.integrity(t); len(evs) != 2 {
		t.Errorf("integrity events = %+v, want two (one per fork)", evs)
	}
}

// An agent that sends again entries the collector holds, identical, is not a fork: they
// are acked, and nothing is raised.
func TestReplayIsNotAFork(t *testing.T) {
	f := newFixture(t)
	stored := events(storetest.NewChain(), 10)
	a := f.connect(t, "web-11")
	if resp, err := a.send(t, stored); err != nil || resp.GetAck().GetSeq() != 10 {
		t.Fatalf("storing 10: %v %v", resp, err)
	}
	for _, head := range []*tripwirev1.ChainHead{{Seq: 10, Hash: stored[9].Hash}, nil} {
		a = f.connectHead(t, "web-11", head)
		for _, part := range [][]batch.Entry{stored, stored[2:5], stored[9:]} {
			resp, err := a.send(t, part)
			if err != nil || resp.GetAck() == nil {
				t.Fatalf("replaying %d..%d: %v %v", part[0].Seq, part[len(part)-1].Seq, resp, err)
			}
		}
	}
	if evs := f.integrity(t); len(evs) != 0 {
		t.Errorf("a replay raised %+v", evs)
	}
	hs, err := f.store.Hosts(context.Background())
	if err != nil || len(hs) != 1 {
		t.Errorf("hosts = %+v (%v), want the one host and no fork", hs, err)
	}
	f.wantChain(t, a.hostID, stored)
}

// A probe the agent does not answer ends its session; the host's chain is untouched and
// other agents are served meanwhile.
func TestUnansweredProbeEndsTheSession(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the probe timeout")
	}
	f := newFixture(t)
	stored := events(storetest.NewChain(), 10)
	a := f.connect(t, "web-12")
	if resp, err := a.send(t, stored); err != nil || resp.GetAck().GetSeq() != 10 {
		t.Fatalf("storing 10: %v %v", resp, err)
	}
	other := events(storetest.NewChain(), 8)
	a = f.connectHead(t, "web-12", &tripwirev1.ChainHead{Seq: 8, Hash: other[7].Hash})
	resp, err := a.stream.Recv()
	if err != nil || resp.GetCommand().GetChainHash() == nil {
		t.Fatalf("after registering a departing chain: %v %v, want a chain-hash probe", resp, err)
	}
	good := f.connect(t, "web-13")
	if resp, err := good.send(t, events(storetest.NewChain(), 2)); err != nil || resp.GetAck().GetSeq() != 2 {
		t.Fatalf("another agent while one is probed: %v %v", resp, err)
	}
	start := time.Now()
	if _, err := a.stream.Recv(); err == nil || time.Since(start) > 30*time.Second {
		t.Fatalf("the unanswered probe: err %v after %v, want the session ended", err, time.Since(start))
	}
	f.wantChain(t, a.hostID, stored)
}

// Two agents on one certificate that both run on from the stored head at once: one
// extends the host's chain, the other becomes a fork, and neither's entries are mixed
// into the other's chain.
func TestTwoAgentsRacingOnOneCertificate(t *testing.T) {
	f := newFixture(t)
	hc, err := pki.Issue(f.pkiDir, "web-14", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	prefix := events(storetest.NewChain(), 4)
	p := f.startAgent(t, hc, transporttest.NewMemChain(prefix))
	f.waitStored(t, hc.HostID, p)
	p.stop()
	a := f.startAgent(t, hc, transporttest.NewMemChain(append(slices.Clone(prefix), events(storetest.ChainAfter(prefix[3]), 6)...)))
	b := f.startAgent(t, hc, transporttest.NewMemChain(append(slices.Clone(prefix), events(storetest.ChainAfter(prefix[3]), 6)...)))
	for range 5 {
		for _, x := range []*runningAgent{a, b} {
			all := x.chain.All()
			x.chain.Add(events(storetest.ChainAfter(all[len(all)-1]), 3)...)
		}
	}
	var host, fork *runningAgent
	waitFor(t, "one agent on the host's chain", func() (bool, string) {
		_, hash, err := f.store.Head(context.Background(), hc.HostID)
		for _, x := range []*runningAgent{a, b} {
			if all := x.chain.All(); hash == all[len(all)-1].Hash {
				host = x
			}
		}
		return host != nil, fmt.Sprint(hash, err)
	})
	fork = a
	if host == a {
		fork = b
	}
	forkID := storage.ForkID(hc.HostID, 5, fork.chain.All()[4].Hash)
	f.waitStored(t, hc.HostID, host)
	f.waitStored(t, forkID, fork)
	f.wantChain(t, hc.HostID, host.chain.All())
	f.wantChain(t, forkID, fork.chain.All())
	if evs := f.integrity(t); len(evs) != 1 {
		t.Errorf("integrity events = %+v, want one", evs)
	}
}
