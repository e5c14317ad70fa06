// Package transport ships the agent's audit chain to the collector: a gRPC stream over
// mutual TLS that sends Arrow batches read from the chain after the last acked seq,
// reconnects with exponential backoff and jitter, and resends whatever was not acked.
// It answers the collector's chain-hash probes, by which a collector finds where a
// chain departs from the one it holds for the host (docs/formats/wire.md). The chain on
// disk is the queue; nothing is held only in memory.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tripwire-project/tripwire/proto/batch"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// Chain is what the shipper needs from the local audit chain. Implementations must be
// safe for concurrent use: the shipper reads while the pipeline appends.
type Chain interface {
	// Head returns the last entry's seq and hash.
	Head() (seq uint64, hash string)
	// ReadFrom returns up to max consecutive entries starting at seq (fewer, or none, at
	// the head).
	ReadFrom(seq uint64, max int) ([]batch.Entry, error)
	// Acked returns the highest seq the collector has acked.
	Acked() uint64
	// SetAcked records that the collector holds every entry up to seq.
	SetAcked(seq uint64) error
	// Appended returns a channel that receives a value after entries are appended.
	Appended() <-chan struct{}
}

// Options configure a Shipper.
type Options struct {
	Address  string
	TLS      *tls.Config
	Hostname string
	Version  string
	Kernel   string
	// Watchers reports the watchers' current modes for registration.
	Watchers func() []*tripwirev1.WatcherStatus
	// BatchSize is the most entries per Arrow batch (default 512).
	BatchSize int
	// Window is the most entries sent and not yet acked (default 8192).
	Window uint64
	// Heartbeat is the heartbeat interval (default 5 s).
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound reconnect delays (defaults 100 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// OnRules receives each central rule set the collector pushes, on the stream's
	// receiving goroutine: it must return promptly (hand the work off).
	OnRules func(*tripwirev1.RuleSet)
	// Renewer, if set, renews the certificate over the stream when due (renew.go).
	Renewer Renewer
}

// Shipper streams a chain to the collector. Run it once; Status is safe to call
// concurrently.
type Shipper struct {
	opts  Options
	chain Chain

	connected  atomic.Bool
	lastAck    atomic.Int64 // unix nanos
	reconnects atomic.Uint64
	hostID     atomic.Value // string
	lastErr    atomic.Value // string
	reconnect  chan struct{}
	renewal    renewState // renew.go
}

// Status is the shipper's state for /healthz.
type Status struct {
	Connected  bool      `json:"connected"`
	HostID     string    `json:"host_id,omitempty"`
	LastAckAt  time.Time `json:"last_ack_at,omitzero"`
	Reconnects uint64    `json:"reconnects"`
	LastError  string    `json:"last_error,omitempty"`
}

// New returns a shipper for chain.
func New(chain Chain, opts Options) *Shipper {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.Window == 0 {
		opts.Window = 8192
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 5 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Watchers == nil {
		opts.Watchers = func() []*tripwirev1.WatcherStatus { return nil }
	}
	return &Shipper{opts: opts, chain: chain, reconnect: make(chan struct{}, 1)}
}

// Status returns the current connection state.
func (s *Shipper) Status() Status {
	st := Status{Connected: s.connected.Load(), Reconnects: s.reconnects.Load()}
	if v, ok := s.hostID.Load().(string); ok {
		st.HostID = v
	}
	if v, ok := s.lastErr.Load().(string); ok {
		st.LastError = v
	}
	if n := s.lastAck.Load(); n != 0 {
		st.LastAckAt = time.Unix(0, n).UTC()
	}
	return st
}

// Run ships until ctx ends, reconnecting with exponential backoff and jitter after any
// failure. It returns nil when ctx is done.
func (s *Shipper) Run(ctx context.Context) error {
	dial := func() (*grpc.ClientConn, error) {
		conn, err := grpc.NewClient(s.opts.Address,
			grpc.WithTransportCredentials(credentials.NewTLS(s.opts.TLS)),
			// Notice a dead collector or a dropped NAT entry in seconds, not when TCP
			// gives up; the collector permits pings every 10 s.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		)
		if err != nil {
			return nil, fmt.Errorf("creating gRPC client for %s: %w", s.opts.Address, err)
		}
		return conn, nil
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	defer func() { conn.Close() }()
	backoff := s.opts.MinBackoff
	for {
		start := time.Now()
		sessCtx, endSession := context.WithCancel(ctx)
		reconnect := false
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-s.reconnect:
				reconnect = true
				endSession()
			case <-sessCtx.Done():
			}
		}()
		err := s.session(sessCtx, tripwirev1.NewIngestServiceClient(conn))
		endSession()
		<-watched
		s.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if reconnect {
			// New credentials (SIGHUP): a new connection, so a new handshake, at once.
			conn.Close()
			if conn, err = dial(); err != nil {
				return err
			}
			backoff = s.opts.MinBackoff
			continue
		}
		s.lastErr.Store(err.Error())
		s.opts.Logger.Warn("collector session ended", "err", err)
		if time.Since(start) > time.Minute {
			backoff = s.opts.MinBackoff // it had been working: start over
		}
		// Full jitter: sleep a random time up to the current backoff.
		delay := time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond
		s.reconnects.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-s.reconnect:
			conn.Close()
			if conn, err = dial(); err != nil {
				return err
			}
			backoff = s.opts.MinBackoff
			continue
		case <-time.After(delay):
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
}

// Reconnect ends the current session and connects again at once, over a new
// connection: call it after new credentials are loaded (SIGHUP), since an established
// connection keeps the certificate it was made with.
func (s *Shipper) Reconnect() {
	select {
	case s.reconnect <- struct{}{}:
	default:
	}
}

// session runs one stream: register, then send and receive until an error.
func (s *Shipper) session(ctx context.Context, client tripwirev1.IngestServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Stream(ctx)
	if err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	headSeq, headHash := s.chain.Head()
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Register{Register: &tripwirev1.Register{
		ProtocolVersion: tripwirev1.ProtocolVersion,
		AgentVersion:    s.opts.Version,
		Host: &tripwirev1.HostFacts{
			Hostname: s.opts.Hostname, Os: runtime.GOOS, Arch: runtime.GOARCH, Kernel: s.opts.Kernel,
			Watchers: s.opts.Watchers(),
		},
		Head: &tripwirev1.ChainHead{Seq: headSeq, Hash: headHash},
	}}}); err != nil {
		return fmt.Errorf("sending registration: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("registering: %w", err)
	}
	reg := resp.GetRegistered()
	if reg == nil {
		return errors.New("registering: collector did not answer Registered")
	}
	s.hostID.Store(reg.GetHostId())
	s.connected.Store(true)
	s.lastErr.Store("")
	s.opts.Logger.Info("connected to collector", "address", s.opts.Address, "host_id", reg.GetHostId(), "collector_head", reg.GetAckedSeq(), "local_head", headSeq)
	if acked := reg.GetAckedSeq(); acked > s.chain.Acked() && acked <= headSeq {
		if err := s.chain.SetAcked(acked); err != nil {
			return err
		}
	}
	if reg.GetAckedSeq() > headSeq {
		s.opts.Logger.Error("collector holds more of this host's chain than the local chain has: a reinstalled agent or a cloned certificate", "collector_head", reg.GetAckedSeq(), "local_head", headSeq)
	}

	// The send cursor follows the collector: it resumes after what the collector holds.
	var cursor atomic.Uint64
	cursor.Store(min(reg.GetAckedSeq(), headSeq) + 1)
	kick := make(chan struct{}, 1)
	// The collector's chain-hash probes, answered by the sender: a gRPC client stream
	// must not be sent on from two goroutines at once.
	probes := make(chan uint64, probeQueue)
	wake := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}

	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // receiver
		defer wg.Done()
		for {
			resp, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("collector closed the stream")
				}
				errc <- err
				cancel() // end the sender now, not at its next Send
				return
			}
			switch m := resp.Msg.(type) {
			case *tripwirev1.StreamResponse_Ack:
				seq := m.Ack.GetSeq()
				if seq > s.chain.Acked() {
					if head, _ := s.chain.Head(); seq <= head {
						if err := s.chain.SetAcked(seq); err != nil {
							errc <- err
							return
						}
					}
				}
				s.lastAck.Store(time.Now().UnixNano())
				wake()
			case *tripwirev1.StreamResponse_Command:
				if rf := m.Command.GetResendFrom(); rf != nil && rf.GetSeq() > 0 {
					s.opts.Logger.Warn("collector asked for a resend", "from_seq", rf.GetSeq())
					cursor.Store(rf.GetSeq())
					wake()
				}
				if rs := m.Command.GetRules(); rs != nil && s.opts.OnRules != nil {
					s.opts.OnRules(rs)
				}
				if r := m.Command.GetRenewed(); r != nil {
					s.renewed(r)
				}
				if ch := m.Command.GetChainHash(); ch != nil {
					select {
					case probes <- ch.GetSeq():
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	err = s.sendLoop(ctx, stream, &cursor, kick, probes)
	cancel()
	wg.Wait()
	// The receiver's error carries the collector's reason (e.g. why a batch was
	// refused); a send error after the stream broke only says EOF or canceled.
	select {
	case rerr := <-errc:
		return rerr
	default:
	}
	return err
}

func (s *Shipper) sendLoop(ctx context.Context, stream tripwirev1.IngestService_StreamClient, cursor *atomic.Uint64, kick <-chan struct{}, probes <-chan uint64) error {
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	if err := s.requestRenewal(stream, true); err != nil {
		return err
	}
	for {
		// Send everything available within the window.
		for {
			// A probing collector drops batches until it has its answers: give them first.
			if err := s.answerProbes(stream, probes); err != nil {
				return err
			}
			next := cursor.Load()
			acked := s.chain.Acked()
			if next > acked && next-1-acked >= s.opts.Window {
				break // wait for acks
			}
			entries, err := s.chain.ReadFrom(next, s.opts.BatchSize)
			if err != nil {
				return fmt.Errorf("reading chain from seq %d: %w", next, err)
			}
			if len(entries) == 0 {
				break
			}
			data, err := batch.Encode(entries)
			if err != nil {
				return err
			}
			last := entries[len(entries)-1].Seq
			if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Batch{Batch: &tripwirev1.EventBatch{
				ArrowIpc: data, FirstSeq: entries[0].Seq, LastSeq: last,
			}}}); err != nil {
				return fmt.Errorf("sending batch %d..%d: %w", entries[0].Seq, last, err)
			}
			cursor.CompareAndSwap(next, last+1)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.chain.Appended():
		case <-kick:
		case seq := <-probes:
			if err := s.answerProbe(stream, seq); err != nil {
				return err
			}
		case <-heartbeat.C:
			seq, hash := s.chain.Head()
			if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Heartbeat{Heartbeat: &tripwirev1.Heartbeat{
				Time: timestamppb.Now(), Head: &tripwirev1.ChainHead{Seq: seq, Hash: hash}, QueueDepth: seq - min(s.chain.Acked(), seq),
				Watchers: s.opts.Watchers(),
			}}}); err != nil {
				return fmt.Errorf("sending heartbeat: %w", err)
			}
			if err := s.requestRenewal(stream, false); err != nil {
				return err
			}
		}
	}
}

// probeQueue is how many chain-hash probes may wait for the sender. The collector sends
// one at a time and waits for its answer, so one would do.
const probeQueue = 16

// answerProbes answers the probes waiting, without waiting for more.
func (s *Shipper) answerProbes(stream tripwirev1.IngestService_StreamClient, probes <-chan uint64) error {
	for {
		select {
		case seq := <-probes:
			if err := s.answerProbe(stream, seq); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// answerProbe sends the hash of entry seq of the local chain, or "" when the chain does
// not hold it (seq 0, past the head, or unreadable). The collector compares it with the
// hash it holds to find where this chain departs from the one it stores for the host
// (docs/formats/wire.md).
func (s *Shipper) answerProbe(stream tripwirev1.IngestService_StreamClient, seq uint64) error {
	hash := ""
	if seq > 0 {
		entries, err := s.chain.ReadFrom(seq, 1)
		switch {
		case err != nil:
			s.opts.Logger.Warn("reading a chain entry the collector asked about", "seq", seq, "err", err)
		case len(entries) == 1 && entries[0].Seq == seq:
			hash = entries[0].Hash
		}
	}
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_ChainHash{ChainHash: &tripwirev1.ChainHash{Seq: seq, Hash: hash}}}); err != nil {
		return fmt.Errorf("answering the chain-hash probe of seq %d: %w", seq, err)
	}
	return nil
}
