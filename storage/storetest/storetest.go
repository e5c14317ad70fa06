// Package storetest is the conformance suite of storage.Store: the behaviour the
// collector relies on, which every backend (the embedded DuckDB store, ClickHouse with
// PostgreSQL) must show. A backend's test calls Run with a function that opens an empty
// store; each subtest gets its own.
//
// Entries are built as an agent builds them (chain.Payload encoded with encoding/json,
// linked with chain.Hash), times are given in a zone other than UTC, and results must
// come back equal and in UTC.
//
// Event times (of entries, audit entries and alerts) carry nanoseconds, and must come
// back equal to the nanosecond: the chain payload, the hashed and authoritative record,
// has them to the nanosecond, the API promises RFC 3339 with nanoseconds, and followers
// match the alerts Alerts returns with those of the live stream (storage.AlertFromEntry)
// by time. Time filters are exact to the nanosecond too (From inclusive, To exclusive),
// also for a bound a nanosecond from a stored time. A backend must therefore keep
// event times as nanoseconds: the DuckDB store as TIMESTAMP_NS; a ClickHouse 18.16
// backend, which has no DateTime64 (its DateTime is whole seconds), as Int64 nanoseconds
// since the epoch. A signed 64-bit count of nanoseconds spans 1677-09-21 to 2262-04-11,
// so the suite requires event times in the years 1678 to 2261 to be stored, and times
// outside them to be refused with storage.ErrInvalidEntry; filter bounds outside those
// years must still work, so a backend must not convert them to nanoseconds unchecked
// (time.Time.UnixNano overflows there). Host times (first_seen, last_seen) come from the
// collector's clock and need only be kept to the microsecond.
package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
)

// Run runs the suite. open must return an empty store for t; Run closes it when the
// subtest ends (after which open's own t.Cleanup functions run).
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"Hosts/RegisterAndList", testRegisterAndList},
		{"Hosts/ReregisterKeepsFirstSeen", testReregister},
		{"Hosts/Touch", testTouch},
		{"Entries/AppendAndAudit", testAppendAndAudit},
		{"Entries/ResendStoresOnce", testResend},
		{"Entries/HeldEntryIsKept", testHeldEntryKept},
		{"Entries/Invalid", testInvalid},
		{"Entries/ExactPayload", testExactPayload},
		{"Entries/NanosecondTimes", testNanosecondTimes},
		{"Entries/Concurrent", testConcurrent},
		{"Head/Contiguous", testHeadContiguous},
		{"Head/AnyOrder", testHeadAnyOrder},
		{"Alerts/Filters", testAlertFilters},
		{"Alerts/Paging", testAlertPaging},
		{"Alerts/LimitBounds", testLimitBounds},
		{"Alerts/EventDetail", testEventDetail},
		{"Alerts/StableID", testStableID},
		{"Audit/Filters", testAuditFilters},
		{"Alerts/RuleAndText", testAlertSearch},
		{"Alerts/Triage", testTriage},
		{"Alerts/Counts", testAlertCounts},
		{"Query/Select", testQuerySelect},
		{"Query/Refused", testQueryRefused},
		{"Rules/PutAndList", testRules},
		{"Hosts/CertsAndRevocation", testCertsAndRevocation},
		{"Hosts/DeadMan", testDeadMan},
		{"Hosts/EventAlerts", testHostEventAlerts},
		{"Hosts/Health", testHostHealth},
	}
	cases = append(cases, forkCases()...)
	cases = append(cases, enrolCases...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("closing store: %v", err)
				}
			})
			c.fn(t, s)
		})
	}
}

// Chain builds the entries of one host's audit chain as the agent writes them.
type Chain struct {
	prev string
	next uint64
}

// NewChain returns a chain whose first entry will be seq 1.
func NewChain() *Chain { return &Chain{prev: chain.GenesisPrev, next: 1} }

// Event returns the next entry, recording ev at ts.
func (c *Chain) Event(ts time.Time, ev chain.Event) batch.Entry {
	return c.payload(chain.Payload{Time: ts, Kind: chain.KindEvent, Event: &ev})
}

// Notice returns the next entry, a notice of the given kind (agent, gap or truncation).
func (c *Chain) Notice(ts time.Time, kind chain.Kind, n chain.Notice) batch.Entry {
	return c.payload(chain.Payload{Time: ts, Kind: kind, Notice: &n})
}

// Anchor returns the next entry, an anchor opening a segment.
func (c *Chain) Anchor(ts time.Time, a chain.Anchor) batch.Entry {
	return c.payload(chain.Payload{Time: ts, Kind: chain.KindAnchor, Anchor: &a})
}

// Text returns the next entry with payload text written by hand rather than by
// encoding/json: format is a fmt format whose one verb (%d) receives the seq. The flattened
// columns are taken from ev, which may be nil for entries that are not events.
func (c *Chain) Text(ts time.Time, kind chain.Kind, ev *chain.Event, format string) batch.Entry {
	e := batch.Entry{Seq: c.next, Time: ts, Kind: string(kind), Payload: fmt.Appendf(nil, format, c.next)}
	if ev != nil {
		e.Type, e.Rule, e.Severity = ev.Type, ev.Rule, ev.Severity
	}
	return c.link(e)
}

func (c *Chain) payload(p chain.Payload) batch.Entry {
	p.Seq = c.next
	text, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("encoding a chain payload built by the suite: %v", err))
	}
	e := batch.Entry{Seq: p.Seq, Time: p.Time, Kind: string(p.Kind), Payload: text}
	if p.Event != nil {
		e.Type, e.Rule, e.Severity = p.Event.Type, p.Event.Rule, p.Event.Severity
	}
	return c.link(e)
}

func (c *Chain) link(e batch.Entry) batch.Entry {
	e.PrevHash = c.prev
	e.Hash = chain.Hash(c.prev, e.Payload)
	c.prev = e.Hash
	c.next++
	return e
}

// zone is where the suite's times are given, so that a backend that ignores zones or
// returns local times fails.
var zone = time.FixedZone("UTC+05:30", 5*3600+1800)

// t0 is the base of the suite's event times: 123456789 ns past a second, so that every
// event time has nanoseconds below its microsecond (789).
var t0 = time.Date(2026, 3, 14, 15, 56, 53, 123456789, zone)

// at returns t0 plus d: an event time.
func at(d time.Duration) time.Time { return t0.Add(d) }

// seen returns a host time: t0's whole microseconds plus d.
func seen(d time.Duration) time.Time { return t0.Truncate(time.Microsecond).Add(d) }

// Bounds of the event times a backend must accept: the years 1678 to 2261.
var (
	earliest = time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC).In(zone)
	latest   = time.Date(2261, 12, 31, 23, 59, 59, 999999999, time.UTC).In(zone)
)

func mustAppend(t *testing.T, s storage.Store, hostID string, entries ...batch.Entry) {
	t.Helper()
	if err := s.AppendEntries(t.Context(), hostID, entries); err != nil {
		t.Fatalf("AppendEntries(%s, %d entries): %v", hostID, len(entries), err)
	}
}

func mustRegister(t *testing.T, s storage.Store, h storage.Host) {
	t.Helper()
	if err := s.RegisterHost(t.Context(), h); err != nil {
		t.Fatalf("RegisterHost(%s): %v", h.HostID, err)
	}
}

func wantHead(t *testing.T, s storage.Store, hostID string, seq uint64, hash string) {
	t.Helper()
	gotSeq, gotHash, err := s.Head(t.Context(), hostID)
	if err != nil {
		t.Fatalf("Head(%s): %v", hostID, err)
	}
	if gotSeq != seq || gotHash != hash {
		t.Fatalf("Head(%s) = %d %q, want %d %q", hostID, gotSeq, gotHash, seq, hash)
	}
}

func wantTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
	if got.Location() != time.UTC {
		t.Errorf("%s is in zone %v, want UTC", what, got.Location())
	}
}

func events(entries []batch.Entry) []batch.Entry {
	var out []batch.Entry
	for _, e := range entries {
		if e.Kind == string(chain.KindEvent) {
			out = append(out, e)
		}
	}
	return out
}

func seqs[T any](xs []T, seq func(T) uint64) []uint64 {
	out := make([]uint64, len(xs))
	for i, x := range xs {
		out[i] = seq(x)
	}
	return out
}

func auditSeqs(es []storage.AuditEntry) []uint64 {
	return seqs(es, func(e storage.AuditEntry) uint64 { return e.Seq })
}

func keys[T any](xs []T, key func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = key(x)
	}
	return out
}
