package storetest

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/storage"
)

// ChainAfter returns a chain whose next entry follows last: a chain that shares its
// entries up to last with the one last came from, and departs after it.
func ChainAfter(last batch.Entry) *Chain { return &Chain{prev: last.Hash, next: last.Seq + 1} }

// forkCases are the suite's cases about forks (docs/adr/0014), which Run runs too.
func forkCases() []struct {
	name string
	fn   func(t *testing.T, s storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"Entries/EntryHash", testEntryHash},
		{"Hosts/Forks", testForks},
	}
}

// testEntryHash: the hash of a held entry, below the head, at it and past a hole; none
// for a seq or host not held.
func testEntryHash(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	es := run(NewChain(), 8, at(0))
	mustAppend(t, s, h.HostID, es[:5]...)
	mustAppend(t, s, h.HostID, es[6:]...) // past a hole at 6
	for _, e := range []batch.Entry{es[0], es[2], es[4], es[7]} {
		got, err := s.EntryHash(t.Context(), h.HostID, e.Seq)
		if err != nil || got != e.Hash {
			t.Errorf("EntryHash(%d) = %q, %v; want %q", e.Seq, got, err, e.Hash)
		}
	}
	for _, q := range []struct {
		host string
		seq  uint64
	}{{h.HostID, 6}, {h.HostID, 9}, {h.HostID, 0}, {h.HostID, 1 << 63}, {"no-such-host", 1}} {
		if got, err := s.EntryHash(t.Context(), q.host, q.seq); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("EntryHash(%s, %d) = %q, %v; want an error wrapping storage.ErrNotFound", q.host, q.seq, got, err)
		}
	}
}

// testForks: a fork is a host row of its own that names its parent and the seq where it
// departs, keeps them when registered again, flags its alerts, and is left alone by the
// dead-man switch.
func testForks(t *testing.T, s storage.Store) {
	ctx := t.Context()
	host := hostWeb()
	mustRegister(t, s, host)
	shared := NewChain()
	prefix := run(shared, 3, at(0))
	hostEs := append(prefix, run(ChainAfter(prefix[2]), 3, at(time.Minute))...)
	mustAppend(t, s, host.HostID, hostEs...)

	fork := hostWeb()
	forkEs := append(prefix, run(ChainAfter(prefix[2]), 2, at(time.Hour))...)
	fork.HostID = storage.ForkID(host.HostID, 4, forkEs[3].Hash)
	fork.ForkOf, fork.ForkSeq = host.HostID, 4
	fork.AgentVersion = "0.4.0"
	mustRegister(t, s, fork)
	mustAppend(t, s, fork.HostID, forkEs...)
	again := fork
	again.ForkOf, again.ForkSeq = "", 0 // a registration never turns a fork into a host
	again.LastSeen = seen(time.Hour)
	mustRegister(t, s, again)

	byID := map[string]storage.Host{}
	for _, h := range hosts(t, s) {
		byID[h.HostID] = h
	}
	if len(byID) != 2 {
		t.Fatalf("Hosts = %+v, want the host and its fork", byID)
	}
	wantHost(t, byID[host.HostID], withHead(host, 6))
	wantFork := withHead(fork, 5)
	wantFork.LastSeen = again.LastSeen
	wantHost(t, byID[fork.HostID], wantFork)

	as := alertsOf(t, s, storage.AlertFilter{Host: host.Hostname, Limit: 100})
	flagged := map[string]string{}
	for _, a := range as {
		flagged[alertKey(a)] = a.ForkOf
	}
	for _, x := range []struct {
		hostID string
		es     []batch.Entry
		forkOf string
	}{{host.HostID, hostEs, ""}, {fork.HostID, forkEs, host.HostID}} {
		for _, e := range events(x.es) {
			key := x.hostID + "/" + itoa(e.Seq)
			got, ok := flagged[key]
			if !ok {
				t.Errorf("alert %s missing from Alerts by host name", key)
			} else if got != x.forkOf {
				t.Errorf("alert %s fork_of = %q, want %q", key, got, x.forkOf)
			}
		}
	}
	if len(as) != len(events(hostEs))+len(events(forkEs)) {
		t.Errorf("Alerts by host name returned %d alerts, want %d", len(as), len(events(hostEs))+len(events(forkEs)))
	}
	wantAudit(t, audit(t, s, storage.AuditFilter{Host: fork.HostID}), fork, forkEs)

	// Both are silent; only the host is marked.
	evs, err := s.MarkOffline(ctx, seen(2*time.Hour), seen(2*time.Hour))
	if err != nil || len(evs) != 1 || evs[0].HostID != host.HostID {
		t.Fatalf("MarkOffline = %+v, %v; want one OFFLINE event, for the host and not its fork", evs, err)
	}
	for _, h := range hosts(t, s) {
		if h.HostID == fork.HostID && h.Status != storage.HostOnline {
			t.Errorf("the fork's status is %s: the dead-man switch must leave forks be", h.Status)
		}
	}
	if _, due := storage.CertExpiryEvent(storage.Host{HostID: fork.HostID, ForkOf: host.HostID, CertSerial: "ab", CertNotAfter: &t0}, t0); due {
		t.Errorf("a fork raised a certificate expiry warning of its own")
	}
}

func withHead(h storage.Host, head uint64) storage.Host {
	h.HeadSeq = head
	return h
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
