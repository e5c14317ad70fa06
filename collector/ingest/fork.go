package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/proto/batch"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
)

// A chain that does not extend the one stored for its host is kept as a fork of the
// host, never refused (docs/adr/0014-forked-chains-kept-and-flagged.md). The session
// finds k, the first seq at which the agent's chain departs from the stored one, by
// bisection with chain-hash probes (equal hashes at a seq mean equal chains up to it),
// then stores, acks and publishes the agent's chain under the fork's id,
// storage.ForkID(parent, k, hash of the agent's entry k), complete from seq 1.

// Bounds on the probing, so that an agent that answers slowly or not at all holds
// nothing but its own session.
const (
	// probeTimeout is how long the agent has to answer one probe.
	probeTimeout = 10 * time.Second
	// maxProbes bounds the probes per chain looked at: bisecting seqs below 2^63 takes
	// at most 63, and one more checks the end of the range.
	maxProbes = 64
	// maxForkDepth bounds how many nested forks (a fork of a fork...) one agent chain
	// is followed through.
	maxForkDepth = 8
	// maxDeferred bounds the messages other than batches and heartbeats held back
	// while probing, to be handled after.
	maxDeferred = 16
)

// chainRef names the chain a session writes: the host's own, or a fork of it.
type chainRef struct {
	id      string // the host id, or the fork's id
	forkOf  string // the chain the fork departs from; "" for the host's own
	forkSeq uint64 // where it departs (k)
}

// point is one entry of the agent's chain: its seq and hash.
type point struct {
	seq  uint64
	hash string
}

// prefixWait is the state of a session whose agent chain is a strict prefix of the
// stored chain: entries 1..eq are held already, identical, and the stored chain holds
// other entries past eq, so the agent's next entry will start a fork at eq+1.
type prefixWait struct {
	chain chainRef
	eq    uint64
}

// received is one result of stream.Recv.
type received struct {
	msg *tripwirev1.StreamRequest
	err error
}

// inbox receives a stream's messages on its own goroutine, so that waiting for one
// can be bounded in time.
type inbox struct {
	msgs chan received
	done chan struct{}
}

// receive starts reading stream; stop ends the reader once the stream ends (the handler
// returning ends it).
func receive(stream tripwirev1.IngestService_StreamServer) (in *inbox, stop func()) {
	in = &inbox{msgs: make(chan received), done: make(chan struct{})}
	go func() {
		for {
			msg, err := stream.Recv()
			select {
			case in.msgs <- received{msg, err}:
			case <-in.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return in, func() { close(in.done) }
}

// next returns the next message: one held back while probing, or the next received.
func (ss *session) next(ctx context.Context) (*tripwirev1.StreamRequest, error) {
	if len(ss.deferred) > 0 {
		msg := ss.deferred[0]
		ss.deferred = ss.deferred[1:]
		return msg, nil
	}
	select {
	case r := <-ss.in.msgs:
		return r.msg, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// confirm records that the agent's chain extends ss.chain: the chain's hosts row is
// registered (created for a new fork), and from now on heartbeats keep it alive.
func (ss *session) confirm(ctx context.Context) error {
	h := ss.facts
	h.HostID, h.ForkOf, h.ForkSeq = ss.chain.id, ss.chain.forkOf, ss.chain.forkSeq
	h.FirstSeen = ss.s.now().UTC()
	h.LastSeen = h.FirstSeen
	if err := ss.s.store.RegisterHost(ctx, h); err != nil {
		ss.log.Error("registering host", "err", err)
		return status.Errorf(codes.Unavailable, "storing host registration: %v", err)
	}
	ss.confirmed = true
	ss.s.markOnline(ctx, ss.chain.id, ss.log)
	ss.health = health{} // a new chain: its row has not heard the report yet
	ss.health.record(ctx, ss.s, ss.chain.id, ss.watchers, ss.log)
	return nil
}

// heartbeat keeps the session's chain alive; a fork's heartbeats never touch the host
// it departs from, so that a clone cannot keep a dead host looking alive. A heartbeat
// showing that an agent whose chain was a prefix of the stored one has written past it
// starts the fork.
func (ss *session) heartbeat(ctx context.Context, hb *tripwirev1.Heartbeat) error {
	ss.s.metrics.BacklogChanged(float64(hb.GetQueueDepth()) - float64(ss.backlog))
	ss.backlog = hb.GetQueueDepth()
	switch {
	case ss.confirmed:
		if err := ss.s.store.TouchHost(ctx, ss.chain.id, ss.s.now().UTC()); err != nil {
			return status.Errorf(codes.Unavailable, "recording heartbeat: %v", err)
		}
		ss.s.markOnline(ctx, ss.chain.id, ss.log)
		if ws := hb.GetWatchers(); len(ws) > 0 {
			ss.watchers = ws
			ss.health.record(ctx, ss.s, ss.chain.id, ws, ss.log)
		}
	case ss.pending != nil && hb.GetHead().GetSeq() > ss.pending.eq:
		w := ss.pending
		return ss.resolve(ctx, point{hb.GetHead().GetSeq(), hb.GetHead().GetHash()}, w.chain, w.eq+1)
	}
	return nil
}

// batchHeardEvery is how often a stored batch counts as a heartbeat. Batches and
// heartbeats share the stream, so under load a heartbeat waits behind the window's
// batches (16 of 512 at the agent's defaults); were only heartbeats counted, the
// dead-man switch would mark OFFLINE a host that is sending all the while (bench/fleet
// saw it for every host of 100 at full rate).
const batchHeardEvery = 5 * time.Second

// batchHeard records a stored batch of a confirmed session as a sign of life of its
// chain, at most once per batchHeardEvery.
func (ss *session) batchHeard(ctx context.Context) error {
	now := ss.s.now()
	if !ss.confirmed || now.Sub(ss.heardAt) < batchHeardEvery {
		return nil
	}
	if err := ss.s.store.TouchHost(ctx, ss.chain.id, now.UTC()); err != nil {
		return status.Errorf(codes.Unavailable, "recording the host's batch as a sign of life: %v", err)
	}
	ss.heardAt = now
	ss.s.markOnline(ctx, ss.chain.id, ss.log)
	return nil
}

// departs reports whether entries depart from the stored chain at its head: the entry
// at the head differs from the stored one, or the entry after it does not link to it.
func (ss *session) departs(entries []batch.Entry) bool {
	if ss.head == 0 {
		return false
	}
	for _, e := range entries {
		if (e.Seq == ss.head && e.Hash != ss.headHash) || (e.Seq == ss.head+1 && e.PrevHash != ss.headHash) {
			return true
		}
	}
	return false
}

// heldHash returns the hash of the entry seq (at most the head) of the session's chain.
func (ss *session) heldHash(ctx context.Context, seq uint64) (string, error) {
	if seq == ss.head {
		return ss.headHash, nil
	}
	hash, err := ss.s.store.EntryHash(ctx, ss.chain.id, seq)
	if err != nil {
		return "", status.Errorf(codes.Unavailable, "reading stored entry %d: %v", seq, err)
	}
	return hash, nil
}

// resolve finds the chain the agent's chain (up to agent) extends, starting from chain
// c whose first lo-1 entries are known to equal the agent's, and switches the session
// to it: c itself when the agent's chain extends it; a fork of c (found or created)
// when it departs from c; or, when it is a strict prefix of c, a wait for the agent's
// next entry. Batches arriving meanwhile are dropped unacked: the agent is asked to
// resend from the head of the chain the session continues.
func (ss *session) resolve(ctx context.Context, agent point, c chainRef, lo uint64) error {
	ss.confirmed, ss.pending = false, nil
	for depth := 0; ; depth++ {
		if depth == maxForkDepth {
			return status.Errorf(codes.FailedPrecondition, "the agent's chain departs from %d nested forks of host %s: not following it further; preserve the agent's audit directory and issue it a new host id (tripwire-collector pki issue --new-host-id)", maxForkDepth, ss.hostname)
		}
		head, headHash, err := ss.s.store.Head(ctx, c.id)
		if err != nil {
			return status.Errorf(codes.Unavailable, "reading chain head: %v", err)
		}
		b := &bisection{ss: ss, chain: c.id, agent: agent, head: head, headHash: headHash}
		end := min(agent.seq, head)
		differs, endHash := false, ""
		if end >= lo {
			if differs, endHash, err = b.differs(ctx, end); err != nil {
				return err
			}
		}
		if !differs {
			if agent.seq >= head {
				return ss.adopt(ctx, c, head, headHash)
			}
			return ss.awaitGrowth(ctx, c, agent, head)
		}
		k, hash, err := b.first(ctx, lo, end, endHash)
		if err != nil {
			return err
		}
		fork := chainRef{id: storage.ForkID(c.id, k, hash), forkOf: c.id, forkSeq: k}
		ss.log.Error("the agent's chain departs from the stored one: keeping it as a fork",
			"chain", c.id, "fork", fork.id, "fork_seq", k, "agent_head", agent.seq, "stored_head", head, "probes", b.probes)
		ss.s.raise(ctx, storage.ForkEvent(ss.hostID, ss.hostname, c.id, fork.id, k, ss.s.now().UTC()), ss.log)
		c, lo = fork, k+1
	}
}

// adopt makes c, whose stored chain the agent's extends, the session's chain, and asks
// the agent for what c lacks.
func (ss *session) adopt(ctx context.Context, c chainRef, head uint64, headHash string) error {
	ss.chain, ss.head, ss.headHash = c, head, headHash
	ss.log = ss.baseLog
	if c.forkOf != "" {
		ss.log = ss.baseLog.With("fork", c.id)
	}
	if err := ss.confirm(ctx); err != nil {
		return err
	}
	ss.log.Info("session continues the chain", "chain", c.id, "fork_of", c.forkOf, "fork_seq", c.forkSeq, "stored_head", head)
	return ss.send(ss.resendFrom(head + 1))
}

// awaitGrowth puts the session in wait for the agent's next entry: the agent's chain is
// a strict prefix of c (cut, or restored from a backup), which it shares up to
// agent.seq. The truncation is raised at once, once.
func (ss *session) awaitGrowth(ctx context.Context, c chainRef, agent point, head uint64) error {
	ss.pending = &prefixWait{chain: c, eq: agent.seq}
	ss.log.Error("the agent's chain is a truncated copy of the stored one: its next entry starts a fork",
		"chain", c.id, "agent_head", agent.seq, "stored_head", head)
	ss.s.raise(ctx, storage.TruncationEvent(ss.hostID, ss.hostname, c.id, agent.seq, agent.hash, head, ss.s.now().UTC()), ss.log)
	return nil
}

// resendFrom is the command asking the agent to send its chain again from seq; batches
// that arrive past a gap before the agent reads it are dropped rather than asked for
// again.
func (ss *session) resendFrom(seq uint64) *tripwirev1.StreamResponse {
	ss.resendAsked = seq
	return &tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Command{Command: &tripwirev1.Command{
		Cmd: &tripwirev1.Command_ResendFrom{ResendFrom: &tripwirev1.ResendFrom{Seq: seq}},
	}}}
}

// raise records a host event raised once (a derived id) and, the first time, sends it
// to live subscribers.
func (s *Server) raise(ctx context.Context, ev storage.HostEvent, log *slog.Logger) {
	added, err := s.store.AddHostEvent(ctx, ev)
	if err != nil {
		log.Error("recording the integrity event", "event_id", ev.EventID, "err", err)
		return
	}
	if added && s.broker != nil {
		s.broker.Publish(ev.Alert())
	}
}

// bisection compares the agent's chain with the stored chain c by probing the agent.
type bisection struct {
	ss       *session
	chain    string
	agent    point
	head     uint64
	headHash string
	probes   int
}

// differs compares the two chains' entries at seq (at most both heads), returning the
// agent's hash there.
func (b *bisection) differs(ctx context.Context, seq uint64) (bool, string, error) {
	theirs, err := b.agentHash(ctx, seq)
	if err != nil {
		return false, "", err
	}
	ours := b.headHash
	if seq != b.head {
		if ours, err = b.ss.s.store.EntryHash(ctx, b.chain, seq); err != nil {
			return false, "", status.Errorf(codes.Unavailable, "reading stored entry %d: %v", seq, err)
		}
	}
	return theirs != ours, theirs, nil
}

// first returns the first seq in [lo, hi] at which the chains differ, and the agent's
// hash there, knowing that they differ at hi (where the agent's hash is hiHash): since
// equal hashes mean equal chains up to a seq, the seqs where they differ are a suffix.
func (b *bisection) first(ctx context.Context, lo, hi uint64, hiHash string) (uint64, string, error) {
	for lo < hi {
		mid := lo + (hi-lo)/2
		differs, hash, err := b.differs(ctx, mid)
		if err != nil {
			return 0, "", err
		}
		if differs {
			hi, hiHash = mid, hash
		} else {
			lo = mid + 1
		}
	}
	return hi, hiHash, nil
}

// agentHash returns the hash of the agent's entry seq (at most its head), probing the
// agent unless seq is the head it named.
func (b *bisection) agentHash(ctx context.Context, seq uint64) (string, error) {
	if seq == b.agent.seq {
		return b.agent.hash, nil
	}
	if b.probes == maxProbes {
		return "", status.Errorf(codes.FailedPrecondition, "placing the agent's chain took more than %d chain-hash probes", maxProbes)
	}
	b.probes++
	hash, err := b.ss.probe(ctx, seq)
	if err != nil {
		return "", err
	}
	if hash == "" {
		return "", status.Errorf(codes.FailedPrecondition, "the agent does not hold entry %d of its own chain (head %d): it cannot be stored from seq 1; preserve its audit directory", seq, b.agent.seq)
	}
	return hash, nil
}

// probe asks the agent for the hash of its entry seq and waits for the answer.
// Batches arriving meanwhile are dropped (the agent will be asked to resend), and
// heartbeats ignored; other messages are held back for the session's loop.
func (ss *session) probe(ctx context.Context, seq uint64) (string, error) {
	if err := ss.send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Command{Command: &tripwirev1.Command{
		Cmd: &tripwirev1.Command_ChainHash{ChainHash: &tripwirev1.ChainHashRequest{Seq: seq}},
	}}}); err != nil {
		return "", err
	}
	timer := time.NewTimer(probeTimeout)
	defer timer.Stop()
	for {
		var r received
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-timer.C:
			return "", status.Errorf(codes.DeadlineExceeded, "the agent did not answer the chain-hash probe of seq %d within %s", seq, probeTimeout)
		case r = <-ss.in.msgs:
		}
		if errors.Is(r.err, io.EOF) {
			return "", status.Error(codes.Canceled, "the agent closed the stream while its chain was probed")
		}
		if r.err != nil {
			return "", r.err
		}
		if ss.cert != nil {
			if err := ss.s.revokedErr(ss.cert); err != nil {
				return "", err
			}
		}
		switch m := r.msg.Msg.(type) {
		case *tripwirev1.StreamRequest_ChainHash:
			if m.ChainHash.GetSeq() == seq {
				return m.ChainHash.GetHash(), nil
			}
			// The answer to an earlier probe of an abandoned resolution: ignored.
		case *tripwirev1.StreamRequest_Batch, *tripwirev1.StreamRequest_Heartbeat:
		case *tripwirev1.StreamRequest_Register:
			return "", status.Error(codes.FailedPrecondition, "Register sent twice on one stream")
		default:
			if len(ss.deferred) == maxDeferred {
				return "", status.Error(codes.ResourceExhausted, fmt.Sprintf("more than %d messages held back while the agent's chain was probed", maxDeferred))
			}
			ss.deferred = append(ss.deferred, r.msg)
		}
	}
}

// chainLocks serialise, per chain, the check, append and verification of batches by the
// sessions of one collector: without it, two agents on one certificate could each check
// against the same head and then append, the second's entries landing after the
// first's. Across collector replicas the store's append does not check links, and that
// moment stays open (docs/adr/0014).
type chainLocks struct {
	mu sync.Mutex
	m  map[string]*chainLock
}

type chainLock struct {
	sync.Mutex
	users int
}

// lock takes the lock of chain id and returns its release.
func (l *chainLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*chainLock{}
	}
	c := l.m[id]
	if c == nil {
		c = &chainLock{}
		l.m[id] = c
	}
	c.users++
	l.mu.Unlock()
	c.Lock()
	return func() {
		c.Unlock()
		l.mu.Lock()
		if c.users--; c.users == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}
