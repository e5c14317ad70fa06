// Package enroll is the collector's EnrollService: a host that has no certificate yet
// redeems a one-time join token (proto/jointoken) for a certificate of a key it made
// itself, so that no private key is ever carried to a host. It is served on its own
// listener (listen.enroll), whose TLS asks for no client certificate
// (pki.ServerTLS.EnrollConfig): the token is the proof, and the host has checked the
// collector's CA against the token's pin before it sent the token.
//
// A refused token gets one answer whatever the reason (PERMISSION_DENIED, the same
// message), so that a caller learns nothing about which tokens exist; the collector's
// log says which check failed and from which address. Failed attempts are throttled per
// source address. See docs/adr/0013-enrolment-and-short-lived-certificates.md.
package enroll

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/collector/metrics"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/proto/jointoken"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
)

// Throttling defaults: failed attempts allowed per source address per window.
const (
	DefaultMaxFailures   = 5
	DefaultFailureWindow = time.Minute
)

// RefusedMessage is what a host is told about any refused token.
const RefusedMessage = "join token refused: it is unknown, already used, expired or not this collector's; " +
	"make a new one with `tripwire-collector pki token --host NAME`"

// Options configure a Server.
type Options struct {
	// Store keeps the tokens; any replica's store sees every token.
	Store storage.Store
	// Signer signs the certificates, with the configured validity.
	Signer *pki.Signer
	// Logger may be nil.
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Enrolment
	// MaxFailures failed attempts from one address within FailureWindow make it wait for
	// the window to end; zero values take the defaults.
	MaxFailures   int
	FailureWindow time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Server implements tripwirev1.EnrollServiceServer. It is safe for concurrent use.
type Server struct {
	tripwirev1.UnimplementedEnrollServiceServer
	o        Options
	throttle *throttle
}

// New returns an enrolment server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxFailures
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = DefaultFailureWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{o: o, throttle: newThrottle(o.MaxFailures, o.FailureWindow)}
}

// Enroll redeems a join token for a certificate of the request's key.
func (s *Server) Enroll(ctx context.Context, req *tripwirev1.EnrollRequest) (*tripwirev1.EnrollResponse, error) {
	now := s.o.Now()
	from, ip := peerAddr(ctx)
	log := s.o.Logger.With("peer", from)
	if wait := s.throttle.retryAfter(ip, now); wait > 0 {
		log.Warn("enrolment refused: too many failed attempts from this address", "retry_after", wait.Round(time.Second))
		s.o.Metrics.Enrolled(metrics.ResultThrottled)
		return nil, status.Errorf(codes.ResourceExhausted, "too many failed enrolment attempts from this address: try again in %s", wait.Round(time.Second))
	}
	if !slices.Contains(tripwirev1.SupportedProtocolVersions, req.GetProtocolVersion()) {
		s.o.Metrics.Enrolled(metrics.ResultInvalid)
		return nil, status.Errorf(codes.FailedPrecondition,
			"agent speaks protocol version %d; this collector supports %v: upgrade the agent or the collector so that they share a version",
			req.GetProtocolVersion(), tripwirev1.SupportedProtocolVersions)
	}
	// The request is checked before the token, so that a malformed one does not spend it.
	csr, err := pki.ParseCSR(req.GetCsrDer())
	if err != nil {
		log.Warn("enrolment refused: bad signing request", "err", err)
		s.o.Metrics.Enrolled(metrics.ResultInvalid)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	tok, err := jointoken.Parse(req.GetToken())
	if err != nil {
		return nil, s.refuse(log, ip, now, err.Error())
	}
	log = log.With("token_id", tok.ID)
	if tok.CAPin != s.o.Signer.CAFingerprint() {
		return nil, s.refuse(log, ip, now, "the token pins another CA (made by another collector, or forged)")
	}
	redeemed, err := s.o.Store.RedeemJoinToken(ctx, tok.ID, tok.SecretSHA256(), now.UTC(), from)
	for _, reason := range []error{storage.ErrTokenUnknown, storage.ErrTokenSecret, storage.ErrTokenSpent, storage.ErrTokenExpired} {
		if errors.Is(err, reason) {
			return nil, s.refuse(log, ip, now, reason.Error())
		}
	}
	if err != nil {
		log.Error("enrolment failed: redeeming the token", "err", err)
		s.o.Metrics.Enrolled(metrics.ResultError)
		return nil, status.Error(codes.Unavailable, "the collector's store is unavailable: try again")
	}
	log = log.With("host", redeemed.Hostname, "host_id", redeemed.HostID)
	signed, err := s.o.Signer.SignHost(csr, redeemed.HostID, redeemed.Hostname)
	if err != nil {
		// The token is spent and no certificate left: the operator makes a new token.
		log.Error("enrolment failed after the token was spent: signing the certificate", "err", err)
		s.o.Metrics.Enrolled(metrics.ResultError)
		return nil, status.Error(codes.Internal, "the collector could not sign the certificate; the token is spent: make a new one")
	}
	cert := signed.Certificate
	log.Info("host enrolled", "serial", pki.SerialHex(cert), "not_after", cert.NotAfter.UTC().Format(time.RFC3339),
		"agent_version", req.GetAgentVersion())
	s.o.Metrics.Enrolled(metrics.ResultOK)
	return &tripwirev1.EnrollResponse{
		HostId: redeemed.HostID, Hostname: redeemed.Hostname,
		CertificatePem: signed.PEM, CaPem: s.o.Signer.CAPEM(),
	}, nil
}

// refuse logs why a token was refused, counts the failure against the address, and
// returns the one answer every refusal gets.
func (s *Server) refuse(log *slog.Logger, ip string, now time.Time, reason string) error {
	s.throttle.fail(ip, now)
	log.Warn("enrolment refused: bad join token", "reason", reason)
	s.o.Metrics.Enrolled(metrics.ResultRefused)
	return status.Error(codes.PermissionDenied, RefusedMessage)
}

// peerAddr returns the caller's address (host:port, for the record) and its host part
// (what throttling counts: a client picks its port).
func peerAddr(ctx context.Context) (addr, ip string) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown", "unknown"
	}
	addr = p.Addr.String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return addr, host
	}
	return addr, addr
}
