// Package ingest is the collector's gRPC IngestService: it authenticates an agent by its
// client certificate, checks the protocol version, verifies that every received chain
// entry hashes correctly and links to the one before, stores batches, and acks a seq only
// once everything up to it is durable in the store. A chain that does not extend the one
// stored for its host is kept as a fork of the host and flagged (fork.go).
package ingest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/collector/live"
	"github.com/tripwire-project/tripwire/collector/metrics"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
)

// Identify returns the host id and host name proven by the peer's client certificate.
type Identify func(ctx context.Context) (hostID, hostname string, err error)

// Server implements tripwirev1.IngestServiceServer. It is safe for concurrent streams.
type Server struct {
	tripwirev1.UnimplementedIngestServiceServer
	store    storage.Store
	broker   live.Publisher
	rules    *ruleFeed
	peerCert func(context.Context) (*x509.Certificate, error) // nil: certificates not checked
	revoked  *pki.Revocations
	identify Identify
	logger   *slog.Logger
	version  string
	now      func() time.Time
	metrics  *metrics.Collector
	chains   chainLocks
	renewal  *renewal // renew.go; nil: renewals refused
}

// New returns an ingest server writing to store and publishing new alerts to broker
// (nil: no live feed).
// logger and m may be nil.
func New(store storage.Store, broker live.Publisher, identify Identify, version string, logger *slog.Logger, m *metrics.Collector) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{store: store, broker: broker, identify: identify, logger: logger, version: version, now: time.Now, metrics: m, rules: newRuleFeed(store)}
}

// BatchError says a received batch is not a valid continuation of a chain; it names the
// seq and the reason.
type BatchError struct {
	Seq    uint64
	Reason string
}

func (e *BatchError) Error() string { return fmt.Sprintf("entry seq %d: %s", e.Seq, e.Reason) }

// Stream serves one agent session.
func (s *Server) Stream(stream tripwirev1.IngestService_StreamServer) error {
	ctx := stream.Context()
	hostID, certName, err := s.identify(ctx)
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "identifying agent: %v", err)
	}
	log := s.logger.With("host_id", hostID, "host", certName)

	first, err := stream.Recv()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	if reg == nil {
		return status.Error(codes.FailedPrecondition, "the first message of a stream must be Register")
	}
	if !slices.Contains(tripwirev1.SupportedProtocolVersions, reg.GetProtocolVersion()) {
		s.metrics.Refused()
		return status.Errorf(codes.FailedPrecondition,
			"agent speaks protocol version %d; this collector (version %s) supports %v: upgrade the agent or the collector so that they share a version",
			reg.GetProtocolVersion(), s.version, tripwirev1.SupportedProtocolVersions)
	}
	hostname := certName
	if hostname == "" {
		hostname = reg.GetHost().GetHostname()
	}
	var (
		cert                *x509.Certificate
		serial, key         string
		notBefore, notAfter *time.Time
	)
	if s.peerCert != nil {
		var err error
		if cert, err = s.peerCert(ctx); err != nil {
			return status.Errorf(codes.Unauthenticated, "reading the agent's certificate: %v", err)
		}
		serial, key, notBefore, notAfter = pki.SerialHex(cert), pki.KeyHash(cert), &cert.NotBefore, &cert.NotAfter
		if err := s.revokedErr(cert); err != nil {
			log.Warn("refusing a revoked certificate", "serial", serial)
			return err
		}
	}
	watchers, _ := json.Marshal(reg.GetHost().GetWatchers())
	head, headHash, err := s.store.Head(ctx, hostID)
	if err != nil {
		return status.Errorf(codes.Unavailable, "reading chain head: %v", err)
	}
	sess := &session{s: s, hostID: hostID, hostname: hostname, cert: cert, chain: chainRef{id: hostID},
		head: head, headHash: headHash, log: log, baseLog: log, watchers: reg.GetHost().GetWatchers(),
		facts: storage.Host{
			Hostname: hostname, OS: reg.GetHost().GetOs(), Arch: reg.GetHost().GetArch(), Kernel: reg.GetHost().GetKernel(),
			AgentVersion: reg.GetAgentVersion(), ProtocolVersion: reg.GetProtocolVersion(),
			Watchers: string(watchers), CertSerial: serial, CertKey: key, CertNotBefore: notBefore, CertNotAfter: notAfter,
		}}
	defer func() { s.metrics.BacklogChanged(-float64(sess.backlog)) }()
	// The stored chain is a prefix of any honest agent's: it only ever holds what the
	// agent fsynced and sent. A shorter or different agent chain departs from it (a
	// wiped, truncated or rewritten log, or a certificate used by two agents): it is
	// kept as a fork, and the agent is never told that the host's entries are its own.
	ah := reg.GetHead()
	departs := ah != nil && head > 0 && (ah.GetSeq() < head || (ah.GetSeq() == head && ah.GetHash() != headHash))
	acked := head
	switch {
	case departs:
		acked = 0
	case head == 0 || (ah != nil && ah.GetSeq() == head):
		if err := sess.confirm(ctx); err != nil {
			return err
		}
	default:
		// The agent is ahead of the stored head: its first batch shows whether it
		// extends the stored chain, and only then is the host registered as heard from.
	}
	defer s.metrics.StreamOpened()()
	log.Info("agent registered", "agent_version", reg.GetAgentVersion(), "agent_head", ah.GetSeq(), "stored_head", head, "departs", departs)
	if err := stream.Send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Registered{Registered: &tripwirev1.Registered{
		HostId: hostID, ProtocolVersion: tripwirev1.ProtocolVersion, CollectorVersion: s.version, AckedSeq: acked,
	}}}); err != nil {
		return err
	}

	// Sends come from this goroutine (acks, resend requests) and from the rule pusher.
	var sendMu sync.Mutex
	send := func(resp *tripwirev1.StreamResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(resp)
	}
	pushCtx, stopPush := context.WithCancel(ctx)
	pushed := make(chan struct{})
	defer func() { stopPush(); <-pushed }()
	go func() {
		defer close(pushed)
		s.pushRules(pushCtx, hostname, send, log)
	}()

	in, stopReceiving := receive(stream)
	defer stopReceiving()
	sess.in, sess.send = in, send
	var renewedAt time.Time // renew.go: this stream's last renewal
	if departs {
		if err := sess.resolve(ctx, point{ah.GetSeq(), ah.GetHash()}, sess.chain, 1); err != nil {
			return err
		}
	}
	for {
		msg, err := sess.next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if cert != nil {
			if err := s.revokedErr(cert); err != nil {
				log.Warn("cutting the stream of a revoked certificate", "serial", serial)
				return err
			}
		}
		switch m := msg.Msg.(type) {
		case *tripwirev1.StreamRequest_Batch:
			resp, err := sess.handleBatch(ctx, m.Batch)
			if err != nil {
				return err
			}
			if resp != nil {
				if err := send(resp); err != nil {
					return err
				}
			}
		case *tripwirev1.StreamRequest_Heartbeat:
			if err := sess.heartbeat(ctx, m.Heartbeat); err != nil {
				return err
			}
		case *tripwirev1.StreamRequest_Renew:
			if err := s.renewCert(ctx, m.Renew, &renewedAt, send, log); err != nil {
				return err
			}
		case *tripwirev1.StreamRequest_Register:
			return status.Error(codes.FailedPrecondition, "Register sent twice on one stream")
		default:
			return status.Error(codes.InvalidArgument, "empty or unknown message")
		}
	}
}

// CheckCertificates makes the server record the certificate each agent registers with,
// and refuse a revoked one — at registration and, on a stream already open, at the
// agent's next message (a heartbeat at the latest).
func (s *Server) CheckCertificates(peerCert func(context.Context) (*x509.Certificate, error), revoked *pki.Revocations) {
	s.peerCert, s.revoked = peerCert, revoked
}

// revokedErr is the refusal of a revoked certificate, or nil.
func (s *Server) revokedErr(cert *x509.Certificate) error {
	if reason, ok := s.revoked.Reason(cert); ok {
		s.metrics.RefusedRevoked(metrics.RevokedAtSession)
		return status.Errorf(codes.PermissionDenied, "this host's certificate (serial %s) is revoked: %s; issue a new one with a new key (tripwire-collector pki issue) and reload the agent (SIGHUP)", pki.SerialHex(cert), reason)
	}
	return nil
}

// markOnline records the return of a host the dead-man switch had marked OFFLINE.
func (s *Server) markOnline(ctx context.Context, hostID string, log *slog.Logger) {
	ev, back, err := s.store.MarkOnline(ctx, hostID, s.now().UTC())
	switch {
	case err != nil:
		log.Warn("recording the host's return", "err", err)
	case back:
		log.Info("host is back", "event_id", ev.EventID)
		if s.broker != nil {
			s.broker.Publish(ev.Alert())
		}
	}
}

// RunRules reads the central rules every interval until ctx ends, so that changes
// reach connected agents; without it no rules are pushed.
func (s *Server) RunRules(ctx context.Context, interval time.Duration) {
	s.rules.run(ctx, interval, s.logger)
}

// pushRules sends the host's central rule set when the stream opens and whenever it
// changes, until ctx ends.
func (s *Server) pushRules(ctx context.Context, host string, send func(*tripwirev1.StreamResponse) error, log *slog.Logger) {
	sent := ""
	for {
		set, changed := s.rules.forHost(host)
		if set != nil && set.GetVersion() != sent {
			if err := send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Command{Command: &tripwirev1.Command{
				Cmd: &tripwirev1.Command_Rules{Rules: set},
			}}}); err != nil {
				return // the stream is ending; the next one gets the set
			}
			log.Info("pushed central rules", "version", set.GetVersion())
			sent = set.GetVersion()
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// session is the state of one agent stream; it is used by one goroutine.
type session struct {
	s        *Server
	hostID   string // from the certificate
	hostname string
	cert     *x509.Certificate // the stream's; nil when certificates are not checked
	facts    storage.Host      // what the agent registered with, for the hosts row
	in       *inbox
	send     func(*tripwirev1.StreamResponse) error
	deferred []*tripwirev1.StreamRequest // held back while probing
	log      *slog.Logger
	baseLog  *slog.Logger

	chain     chainRef // the chain the session writes: the host's, or a fork
	confirmed bool     // the agent's chain extends chain: store, ack, keep alive
	pending   *prefixWait
	head      uint64 // highest seq of chain stored contiguously
	headHash  string
	// resendAsked is the seq of the last resend asked for and not yet received.
	resendAsked uint64
	// watchers is the agent's last report of its watchers; health records it on the
	// session's chain.
	watchers []*tripwirev1.WatcherStatus
	health   health
	// backlog is the agent's last reported queue depth, counted in the backlog metric
	// until the session ends.
	backlog uint64
	// heardAt is when a stored batch last counted as a heartbeat (batchHeard).
	heardAt time.Time
}

func (ss *session) handleBatch(ctx context.Context, b *tripwirev1.EventBatch) (*tripwirev1.StreamResponse, error) {
	entries, err := batch.Decode(b.GetArrowIpc())
	if err != nil {
		ss.log.Warn("rejecting batch", "err", err)
		ss.s.metrics.BatchRejected(metrics.ReasonInvalid)
		return nil, status.Errorf(codes.InvalidArgument, "rejecting batch %d..%d: %v", b.GetFirstSeq(), b.GetLastSeq(), err)
	}
	if err := verifyLinks(entries); err != nil {
		ss.log.Error("rejecting batch that does not hash", "err", err)
		ss.s.metrics.BatchRejected(metrics.ReasonInvalid)
		return nil, status.Errorf(codes.InvalidArgument, "rejecting batch: %v", err)
	}
	last := entries[len(entries)-1]
	if w := ss.pending; w != nil {
		// The agent's chain was a prefix of the stored one: up to its head the entries
		// are held already; its first entry past that starts a fork.
		if last.Seq <= w.eq {
			return nil, nil
		}
		return nil, ss.resolve(ctx, point{last.Seq, last.Hash}, w.chain, w.eq+1)
	}
	resp, departs, err := ss.storeBatch(ctx, entries)
	if departs {
		return nil, ss.resolve(ctx, point{last.Seq, last.Hash}, ss.chain, 1)
	}
	return resp, err
}

// storeBatch checks entries against the session's chain and stores them, or reports that
// they depart from it. It holds the chain's lock, so that two sessions of one
// certificate on this collector check and append in turn.
func (ss *session) storeBatch(ctx context.Context, entries []batch.Entry) (resp *tripwirev1.StreamResponse, departs bool, err error) {
	defer ss.s.chains.lock(ss.chain.id)()
	first, last := entries[0], entries[len(entries)-1]
	// Another agent with this certificate may have moved the head since.
	if ss.head, ss.headHash, err = ss.s.store.Head(ctx, ss.chain.id); err != nil {
		return nil, false, status.Errorf(codes.Unavailable, "reading chain head: %v", err)
	}
	if first.Seq > ss.head+1 {
		if ss.resendAsked == ss.head+1 {
			return nil, false, nil // sent before the agent read the resend request
		}
		// The collector lost entries the agent believes were acked (e.g. a restored
		// store): ask for them again rather than store past a hole.
		ss.log.Warn("gap before batch: asking the agent to resend", "first_seq", first.Seq, "stored_head", ss.head)
		return ss.resendFrom(ss.head + 1), false, nil
	}
	// Entries at or below the head are not stored again; the one at the head must be
	// the stored one, and the first past it must link to it. Otherwise the agent's chain
	// departs from the stored one: it becomes a fork, never mixed in or dropped.
	if ss.departs(entries) {
		ss.log.Error("batch departs from the stored chain", "first_seq", first.Seq, "last_seq", last.Seq, "stored_head", ss.head)
		return nil, true, nil
	}
	started := time.Now()
	if err := ss.s.store.AppendEntries(ctx, ss.chain.id, entries); err != nil {
		if errors.Is(err, storage.ErrInvalidEntry) {
			// Resending cannot fix it: refuse the batch, keep the stream's other work.
			ss.log.Error("rejecting batch the store cannot hold", "err", err)
			ss.s.metrics.BatchRejected(metrics.ReasonInvalid)
			return nil, false, status.Errorf(codes.InvalidArgument, "rejecting batch: %v", err)
		}
		ss.log.Error("storing batch", "err", err)
		ss.s.metrics.BatchRejected(metrics.ReasonStoreUnavailable)
		return nil, false, status.Errorf(codes.Unavailable, "storing batch: %v", err)
	}
	ss.s.metrics.BatchStored(len(entries), time.Since(started).Seconds())
	oldHead := ss.head
	ss.head, ss.headHash, err = ss.s.store.Head(ctx, ss.chain.id)
	if err != nil {
		return nil, false, status.Errorf(codes.Unavailable, "reading chain head: %v", err)
	}
	// The store keeps an entry it holds: if another agent with this certificate stored
	// these seqs first, or the batch lies wholly below the head, what is held may not be
	// what was sent. Equal hashes at the last seq mean equal chains up to it.
	held, err := ss.heldHash(ctx, last.Seq)
	if err != nil {
		return nil, false, err
	}
	if held != last.Hash {
		ss.log.Error("the stored chain holds other entries at the batch's seqs", "first_seq", first.Seq, "last_seq", last.Seq, "stored_head", ss.head)
		return nil, true, nil
	}
	ss.resendAsked = 0
	if !ss.confirmed && last.Seq >= oldHead {
		if err := ss.confirm(ctx); err != nil {
			return nil, false, err
		}
	}
	if err := ss.batchHeard(ctx); err != nil {
		return nil, false, err
	}
	var fresh []storage.Alert
	for _, e := range entries {
		if e.Seq <= oldHead {
			continue // a resend of something already published
		}
		a, ok, err := storage.AlertFromEntry(ss.hostname, ss.chain.id, e)
		if err != nil {
			ss.log.Warn("building live alert", "err", err)
			continue
		}
		if ok {
			a.ForkOf = ss.chain.forkOf
			fresh = append(fresh, a)
		}
	}
	if len(fresh) > 0 && ss.s.broker != nil {
		ss.s.broker.Publish(fresh...)
	}
	// Until the agent's chain is known to extend the stored one at its head, only what
	// the batch itself showed to be held is acked.
	ack := ss.head
	if !ss.confirmed {
		ack = last.Seq
	}
	return &tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Ack{Ack: &tripwirev1.Ack{Seq: ack}}}, false, nil
}

// verifyLinks checks that entries are consecutive, that every hash recomputes from its
// prev hash and payload, that each prev is the hash before it, and that each payload
// names its own seq.
func verifyLinks(entries []batch.Entry) error {
	var buf []byte
	for i, e := range entries {
		if e.Seq == 0 {
			return &BatchError{Seq: 0, Reason: "seq 0 is not a valid seq"}
		}
		if i > 0 {
			prev := entries[i-1]
			if e.Seq != prev.Seq+1 {
				return &BatchError{Seq: e.Seq, Reason: fmt.Sprintf("follows seq %d: entries must be consecutive", prev.Seq)}
			}
			if e.PrevHash != prev.Hash {
				return &BatchError{Seq: e.Seq, Reason: "prev_hash is not the hash of the entry before"}
			}
		}
		if len(e.PrevHash) != chain.HashLen {
			return &BatchError{Seq: e.Seq, Reason: "prev_hash is not 64 hex characters"}
		}
		buf = chain.AppendHash(buf[:0], []byte(e.PrevHash), e.Payload)
		if string(buf) != e.Hash {
			return &BatchError{Seq: e.Seq, Reason: "hash does not match sha256(prev_hash || payload)"}
		}
		want := `{"seq":` + strconv.FormatUint(e.Seq, 10) + `,`
		if len(e.Payload) < len(want) || string(e.Payload[:len(want)]) != want {
			return &BatchError{Seq: e.Seq, Reason: "payload does not start with its own seq"}
		}
		if err := checkColumns(e); err != nil {
			return err
		}
	}
	return nil
}

// checkColumns checks that the flattened columns, which stores filter alerts on, say
// what the hashed payload says: otherwise a sender could hide an event (kind "agent") or
// lower its severity while the chain still verifies.
func checkColumns(e batch.Entry) error {
	var p struct {
		Time  time.Time  `json:"ts"`
		Kind  chain.Kind `json:"kind"`
		Event *struct {
			Type     string `json:"type"`
			Rule     string `json:"rule"`
			Severity string `json:"severity"`
		} `json:"event"`
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return &BatchError{Seq: e.Seq, Reason: fmt.Sprintf("payload is not valid JSON: %v", err)}
	}
	mismatch := func(col, got, want string) error {
		return &BatchError{Seq: e.Seq, Reason: fmt.Sprintf("column %s is %q but the payload says %q", col, got, want)}
	}
	if string(p.Kind) != e.Kind {
		return mismatch(batch.ColKind, e.Kind, string(p.Kind))
	}
	if !p.Time.Equal(e.Time) {
		return mismatch(batch.ColTime, e.Time.Format(time.RFC3339Nano), p.Time.Format(time.RFC3339Nano))
	}
	var typ, rule, sev string
	if p.Event != nil {
		typ, rule, sev = p.Event.Type, p.Event.Rule, p.Event.Severity
	}
	if (p.Event != nil) != (p.Kind == chain.KindEvent) {
		return &BatchError{Seq: e.Seq, Reason: "an event entry must carry an event object, and only it"}
	}
	switch {
	case typ != e.Type:
		return mismatch(batch.ColType, e.Type, typ)
	case rule != e.Rule:
		return mismatch(batch.ColRule, e.Rule, rule)
	case sev != e.Severity:
		return mismatch(batch.ColSeverity, e.Severity, sev)
	}
	return nil
}
