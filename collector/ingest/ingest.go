// Package ingest is the collector's gRPC IngestService: it authenticates an agent by its
// client certificate, checks the protocol version, verifies that every received chain
// entry hashes correctly and links to the one before, stores batches, and acks a seq only
// once everything up to it is durable in the store.
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
	renewal  *renewal // renew.go; nil: renewals refused

	integrityMu sync.Mutex
	integrityAt map[string]time.Time // host id → last integrity event raised
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
		serial              string
		notBefore, notAfter *time.Time
	)
	if s.peerCert != nil {
		cert, err := s.peerCert(ctx)
		if err != nil {
			return status.Errorf(codes.Unauthenticated, "reading the agent's certificate: %v", err)
		}
		serial, notBefore, notAfter = pki.SerialHex(cert), &cert.NotBefore, &cert.NotAfter
		if err := s.revokedErr(serial); err != nil {
			log.Warn("refusing a revoked certificate", "serial", serial)
			return err
		}
	}
	watchers, _ := json.Marshal(reg.GetHost().GetWatchers())
	now := s.now().UTC()
	if err := s.store.RegisterHost(ctx, storage.Host{
		HostID: hostID, Hostname: hostname,
		OS: reg.GetHost().GetOs(), Arch: reg.GetHost().GetArch(), Kernel: reg.GetHost().GetKernel(),
		AgentVersion: reg.GetAgentVersion(), ProtocolVersion: reg.GetProtocolVersion(),
		Watchers: string(watchers), FirstSeen: now, LastSeen: now,
		CertSerial: serial, CertNotBefore: notBefore, CertNotAfter: notAfter,
	}); err != nil {
		log.Error("registering host", "err", err)
		return status.Errorf(codes.Unavailable, "storing host registration: %v", err)
	}
	s.markOnline(ctx, hostID, log)
	head, headHash, err := s.store.Head(ctx, hostID)
	if err != nil {
		return status.Errorf(codes.Unavailable, "reading chain head: %v", err)
	}
	if ah := reg.GetHead(); ah != nil && head > 0 {
		// The stored chain is a prefix of any honest agent's: it only ever holds what the
		// agent fsynced and sent. A shorter or different agent chain is a truncated,
		// replaced or forked log, or a certificate used by two agents.
		if ah.GetSeq() < head || (ah.GetSeq() == head && ah.GetHash() != headHash) {
			log.Error("agent chain does not extend the stored chain: refusing the session", "agent_head", ah.GetSeq(), "stored_head", head)
			s.metrics.Refused()
			s.raiseIntegrity(ctx, hostID, hostname, forkMessage(ah.GetSeq(), head), log)
			return status.Error(codes.FailedPrecondition, forkMessage(ah.GetSeq(), head))
		}
	}
	defer s.metrics.StreamOpened()()
	log.Info("agent registered", "agent_version", reg.GetAgentVersion(), "agent_head", reg.GetHead().GetSeq(), "stored_head", head)
	if err := stream.Send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Registered{Registered: &tripwirev1.Registered{
		HostId: hostID, ProtocolVersion: tripwirev1.ProtocolVersion, CollectorVersion: s.version, AckedSeq: head,
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

	sess := &session{s: s, hostID: hostID, hostname: hostname, head: head, headHash: headHash, log: log}
	var renewedAt time.Time // renew.go: this stream's last renewal
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if serial != "" {
			if err := s.revokedErr(serial); err != nil {
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
			if err := s.store.TouchHost(ctx, hostID, s.now().UTC()); err != nil {
				return status.Errorf(codes.Unavailable, "recording heartbeat: %v", err)
			}
			s.markOnline(ctx, hostID, log)
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
func (s *Server) revokedErr(serial string) error {
	if reason, ok := s.revoked.Reason(serial); ok {
		s.metrics.Refused()
		return status.Errorf(codes.PermissionDenied, "this host's certificate (serial %s) is revoked: %s; issue a new one (tripwire-collector pki issue) and reload the agent (SIGHUP)", serial, reason)
	}
	return nil
}

// integrityRepeat is how long an integrity event stands for a host's refused chain: the
// agent keeps retrying, and one event per retry would bury the first.
const integrityRepeat = time.Hour

// raiseIntegrity records a CRITICAL integrity event for a host whose chain does not
// extend the stored one, and sends it to live subscribers, at most once per
// integrityRepeat per host and collector process.
func (s *Server) raiseIntegrity(ctx context.Context, hostID, hostname, msg string, log *slog.Logger) {
	s.integrityMu.Lock()
	last, seen := s.integrityAt[hostID]
	now := s.now().UTC()
	if seen && now.Sub(last) < integrityRepeat {
		s.integrityMu.Unlock()
		return
	}
	if s.integrityAt == nil {
		s.integrityAt = map[string]time.Time{}
	}
	s.integrityAt[hostID] = now
	s.integrityMu.Unlock()
	ev := storage.NewHostEvent(hostID, hostname, storage.HostIntegrity, now, now)
	ev.Message = msg
	if _, err := s.store.AddHostEvent(ctx, ev); err != nil {
		log.Error("recording the integrity event", "err", err)
	}
	if s.broker != nil {
		s.broker.Publish(ev.Alert())
	}
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
	hostID   string
	hostname string
	head     uint64 // highest seq stored contiguously
	headHash string
	log      *slog.Logger
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
	first := entries[0].Seq
	if first > ss.head+1 {
		// The collector lost entries the agent believes were acked (e.g. a restored
		// store): ask for them again rather than store past a hole.
		ss.log.Warn("gap before batch: asking the agent to resend", "first_seq", first, "stored_head", ss.head)
		return &tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Command{Command: &tripwirev1.Command{
			Cmd: &tripwirev1.Command_ResendFrom{ResendFrom: &tripwirev1.ResendFrom{Seq: ss.head + 1}},
		}}}, nil
	}
	// Entries at or below the head are not stored again; the one at the head must be
	// the stored one, and the first past it must link to it. Otherwise the agent's chain
	// forked from the stored one: refuse rather than drop or mix the two silently.
	for _, e := range entries {
		if ss.head > 0 && ((e.Seq == ss.head && e.Hash != ss.headHash) || (e.Seq == ss.head+1 && e.PrevHash != ss.headHash)) {
			ss.log.Error("batch forks from the stored chain: refusing it", "seq", e.Seq, "stored_head", ss.head)
			ss.s.metrics.BatchRejected(metrics.ReasonInvalid)
			ss.s.raiseIntegrity(ctx, ss.hostID, ss.hostname, forkMessage(e.Seq, ss.head), ss.log)
			return nil, status.Error(codes.FailedPrecondition, forkMessage(e.Seq, ss.head))
		}
	}
	started := time.Now()
	if err := ss.s.store.AppendEntries(ctx, ss.hostID, entries); err != nil {
		if errors.Is(err, storage.ErrInvalidEntry) {
			// Resending cannot fix it: refuse the batch, keep the stream's other work.
			ss.log.Error("rejecting batch the store cannot hold", "err", err)
			ss.s.metrics.BatchRejected(metrics.ReasonInvalid)
			return nil, status.Errorf(codes.InvalidArgument, "rejecting batch: %v", err)
		}
		ss.log.Error("storing batch", "err", err)
		ss.s.metrics.BatchRejected(metrics.ReasonStoreUnavailable)
		return nil, status.Errorf(codes.Unavailable, "storing batch: %v", err)
	}
	ss.s.metrics.BatchStored(len(entries), time.Since(started).Seconds())
	oldHead := ss.head
	ss.head, ss.headHash, err = ss.s.store.Head(ctx, ss.hostID)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading chain head: %v", err)
	}
	var fresh []storage.Alert
	for _, e := range entries {
		if e.Seq <= oldHead {
			continue // a resend of something already published
		}
		a, ok, err := storage.AlertFromEntry(ss.hostname, ss.hostID, e)
		if err != nil {
			ss.log.Warn("building live alert", "err", err)
			continue
		}
		if ok {
			fresh = append(fresh, a)
		}
	}
	if len(fresh) > 0 && ss.s.broker != nil {
		ss.s.broker.Publish(fresh...)
	}
	return &tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Ack{Ack: &tripwirev1.Ack{Seq: ss.head}}}, nil
}

// forkMessage tells an operator what a chain that does not extend the stored one means
// and what to do.
func forkMessage(agentSeq, storedHead uint64) string {
	return fmt.Sprintf("the agent's chain (at seq %d) does not extend the chain this collector holds for the host (up to seq %d): "+
		"the agent's audit log was truncated, replaced or reinstalled, or two agents share one certificate. "+
		"Nothing is lost: the agent keeps its events. Preserve its audit directory as evidence, then issue a certificate "+
		"with a new host id (tripwire-collector pki issue --new-host-id) to start a fresh chain", agentSeq, storedHead)
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
