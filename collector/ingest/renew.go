package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tripwire-project/tripwire/collector/metrics"
	"github.com/tripwire-project/tripwire/collector/pki"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// renewal is what the server needs to renew agents' certificates over their streams.
type renewal struct {
	signer  *pki.Signer
	metrics *metrics.Enrolment
}

// RenewWith makes the server answer agents' RenewRequests with certificates that signer
// signs (same host id and name as the stream's certificate, for the same key, valid for
// the signer's validity). Renewal needs CheckCertificates too. Without RenewWith, or
// while the signer is not Ready, every renewal is refused: the agent keeps its
// certificate and asks again later, and the collector's expiry warning tells the
// operator once renewal is overdue. m may be nil.
func (s *Server) RenewWith(signer *pki.Signer, m *metrics.Enrolment) {
	s.renewal = &renewal{signer: signer, metrics: m}
}

// renewSpacing is the least time between two renewals on one stream. An agent
// reconnects with its new certificate at once, so a second request on the same stream
// comes only from an agent that could not install the first (it asks again after a
// second to five minutes), or from one misbehaving; this bounds what the latter costs.
const renewSpacing = time.Minute

// renewCert answers one RenewRequest with a RenewResult: a certificate, or why there is
// none. A refusal does not end the stream (the agent still ships its events); only a
// failed send does. renewedAt is the stream's last renewal.
func (s *Server) renewCert(ctx context.Context, req *tripwirev1.RenewRequest, renewedAt *time.Time, send func(*tripwirev1.StreamResponse) error, log *slog.Logger) error {
	res := s.renewResult(ctx, req, renewedAt, log)
	return send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Command{Command: &tripwirev1.Command{
		Cmd: &tripwirev1.Command_Renewed{Renewed: res},
	}}})
}

func (s *Server) renewResult(ctx context.Context, req *tripwirev1.RenewRequest, renewedAt *time.Time, log *slog.Logger) *tripwirev1.RenewResult {
	var m *metrics.Enrolment
	if s.renewal != nil {
		m = s.renewal.metrics
	}
	refuse := func(result, msg string) *tripwirev1.RenewResult {
		log.Warn("certificate renewal refused", "reason", msg)
		m.Renewed(result)
		return &tripwirev1.RenewResult{Error: msg}
	}
	if s.renewal == nil || !s.renewal.signer.Ready() {
		return refuse(metrics.ResultRefused, "this collector does not sign certificates (its PKI directory has no CA key): "+
			"renew by hand (tripwire-collector pki issue, then SIGHUP) or connect to a collector that holds the CA key")
	}
	if s.peerCert == nil {
		return refuse(metrics.ResultRefused, "this collector does not check certificates, so it cannot renew one")
	}
	cert, err := s.peerCert(ctx)
	if err != nil {
		return refuse(metrics.ResultRefused, fmt.Sprintf("reading the stream's certificate: %v", err))
	}
	serial := pki.SerialHex(cert)
	log = log.With("serial", serial)
	if reason, revoked := s.revoked.Reason(cert); revoked {
		return refuse(metrics.ResultRefused, fmt.Sprintf("the certificate (serial %s) is revoked (%s): it is not renewed", serial, reason))
	}
	if since := s.now().Sub(*renewedAt); since < renewSpacing {
		return refuse(metrics.ResultRefused, fmt.Sprintf("a certificate was renewed on this stream %s ago: reconnect with it, or ask again in %s",
			since.Round(time.Second), (renewSpacing-since).Round(time.Second)))
	}
	csr, err := pki.ParseCSR(req.GetCsrDer())
	if err == nil {
		err = pki.CheckRenewalKey(csr, cert)
	}
	if err != nil {
		return refuse(metrics.ResultInvalid, err.Error())
	}
	hostID, hostname, err := pki.HostIdentity(cert)
	if err != nil {
		return refuse(metrics.ResultRefused, err.Error())
	}
	signed, err := s.renewal.signer.SignHost(csr, hostID, hostname)
	if err != nil {
		log.Error("certificate renewal failed", "err", err)
		m.Renewed(metrics.ResultError)
		return &tripwirev1.RenewResult{Error: "the collector could not sign the certificate; the agent will ask again"}
	}
	*renewedAt = s.now()
	log.Info("certificate renewed", "new_serial", pki.SerialHex(signed.Certificate),
		"old_not_after", cert.NotAfter.UTC().Format(time.RFC3339), "not_after", signed.Certificate.NotAfter.UTC().Format(time.RFC3339))
	m.Renewed(metrics.ResultOK)
	return &tripwirev1.RenewResult{CertificatePem: signed.PEM}
}
