// Renewal of the agent's certificate over its stream: once two thirds of the
// certificate's lifetime have passed, the shipper sends a RenewRequest (a signing
// request for the same key) and the collector answers with a new certificate, which is
// written over the certificate file and loaded; the shipper then reconnects, so that the
// collector records the new serial. The key never changes, so the key and certificate on
// disk match whenever the agent stops. See
// docs/adr/0013-enrolment-and-short-lived-certificates.md.

package transport

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/tripwire-project/tripwire/internal/pemfile"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// Renewer is what the shipper needs to renew the agent's certificate; ClientTLS
// implements it. The shipper calls it from one goroutine at a time.
type Renewer interface {
	// Certificate returns the certificate in use.
	Certificate() *x509.Certificate
	// RenewalCSR returns a signing request (DER) for the key of the certificate in use.
	RenewalCSR() ([]byte, error)
	// InstallRenewed checks a renewed certificate (PEM) and puts it in use, on disk and
	// for later handshakes, returning it.
	InstallRenewed(certPEM []byte) (*x509.Certificate, error)
}

var _ Renewer = (*ClientTLS)(nil)

// RenewAfter is when a certificate is due for renewal: once two thirds of its lifetime
// (NotBefore to NotAfter) have passed, which leaves a third of it to retry in, should the
// collector be out of reach. The collector warns once less than a quarter is left.
func RenewAfter(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 3 * 2)
}

// renewTimeout is how long an unanswered RenewRequest blocks the next one on the same
// stream.
const renewTimeout = time.Minute

// retryDelay is how long after a failed renewal the next attempt waits: a fiftieth of
// the lifetime (29 min for a day) within 1 s and 5 min, so that a short-lived
// certificate gets many attempts in the third of its life it has left.
func retryDelay(c *x509.Certificate) time.Duration {
	return min(max(c.NotAfter.Sub(c.NotBefore)/50, time.Second), 5*time.Minute)
}

// renewState is the shipper's renewal bookkeeping.
type renewState struct {
	mu            sync.Mutex
	inFlightSince time.Time // zero: no request waiting for an answer
	retryAt       time.Time
	lastRenewed   time.Time
	lastErr       string
}

// RenewalStatus is the shipper's renewal state, for /healthz.
type RenewalStatus struct {
	// RenewAfter is when the certificate in use is due for renewal.
	RenewAfter time.Time
	// LastRenewedAt is when the certificate was last renewed by this process (zero:
	// never).
	LastRenewedAt time.Time
	// LastError says why the last renewal failed; empty after a success.
	LastError string
}

// RenewalStatus returns the renewal state; zero without a Renewer.
func (s *Shipper) RenewalStatus() RenewalStatus {
	if s.opts.Renewer == nil {
		return RenewalStatus{}
	}
	st := &s.renewal
	st.mu.Lock()
	defer st.mu.Unlock()
	return RenewalStatus{RenewAfter: RenewAfter(s.opts.Renewer.Certificate()), LastRenewedAt: st.lastRenewed, LastError: st.lastErr}
}

// requestRenewal sends a RenewRequest on stream if the certificate is due, no request is
// waiting for an answer, and no failure asked to wait. It runs on the sending goroutine,
// at the start of each session (sessionStart, which forgets a request the last session
// took with it) and on each heartbeat tick. Only a failed send is an error.
func (s *Shipper) requestRenewal(stream tripwirev1.IngestService_StreamClient, sessionStart bool) error {
	r := s.opts.Renewer
	if r == nil {
		return nil
	}
	now := time.Now()
	st := &s.renewal
	st.mu.Lock()
	if sessionStart {
		st.inFlightSince = time.Time{}
	}
	cert := r.Certificate()
	if now.Before(RenewAfter(cert)) || now.Before(st.retryAt) || (!st.inFlightSince.IsZero() && now.Sub(st.inFlightSince) < renewTimeout) {
		st.mu.Unlock()
		return nil
	}
	csr, err := r.RenewalCSR()
	if err != nil {
		s.renewalFailed(cert, now, fmt.Sprintf("making the signing request: %v", err))
		st.mu.Unlock()
		return nil
	}
	st.inFlightSince = now
	st.mu.Unlock()
	s.opts.Logger.Info("asking the collector to renew the certificate", "serial", cert.SerialNumber.Text(16),
		"not_after", cert.NotAfter.UTC().Format(time.RFC3339))
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Renew{Renew: &tripwirev1.RenewRequest{CsrDer: csr}}}); err != nil {
		return fmt.Errorf("sending renewal request: %w", err)
	}
	return nil
}

// renewed handles the collector's RenewResult, on the receiving goroutine: it installs
// the certificate and reconnects with it, or records why there is none and waits
// before asking again.
func (s *Shipper) renewed(res *tripwirev1.RenewResult) {
	r := s.opts.Renewer
	if r == nil {
		return
	}
	now := time.Now()
	st := &s.renewal
	st.mu.Lock()
	defer st.mu.Unlock()
	st.inFlightSince = time.Time{}
	old := r.Certificate()
	if msg := res.GetError(); msg != "" {
		s.renewalFailed(old, now, "the collector refused: "+msg)
		return
	}
	cert, err := r.InstallRenewed(res.GetCertificatePem())
	if err != nil {
		s.renewalFailed(old, now, err.Error())
		return
	}
	st.lastRenewed, st.lastErr, st.retryAt = now, "", time.Time{}
	s.opts.Logger.Info("certificate renewed: reconnecting with it", "old_serial", old.SerialNumber.Text(16),
		"serial", cert.SerialNumber.Text(16), "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
	// The open connection was made with the old certificate; the collector records
	// the new one at the next registration.
	s.Reconnect()
}

// renewalFailed records a failed renewal of cert and when to try again. Called with
// the renewal lock held.
func (s *Shipper) renewalFailed(cert *x509.Certificate, now time.Time, msg string) {
	st := &s.renewal
	st.lastErr = msg
	st.retryAt = now.Add(retryDelay(cert))
	s.opts.Logger.Warn("certificate renewal failed: keeping the current certificate", "err", msg,
		"retry_at", st.retryAt.UTC().Format(time.RFC3339), "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
}

// RenewalCSR returns a signing request for the key of the certificate in use, naming
// the certificate's subject (the collector takes only the key).
func (l *ClientTLS) RenewalCSR() ([]byte, error) {
	pair := l.pair.Load()
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key file %s: key of type %T cannot sign", l.keyFile, pair.PrivateKey)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: pair.Leaf.Subject.CommonName}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating signing request: %w", err)
	}
	return der, nil
}

// ErrRenewedCertificate is wrapped by InstallRenewed's errors about the certificate
// itself (as opposed to writing it).
var ErrRenewedCertificate = errors.New("unusable renewed certificate")

// InstallRenewed checks a renewed certificate (PEM) against the one in use — for the
// same key, the same host identity (subject and URI SANs), a client certificate that
// chains to the trusted CA and is valid now — then writes it over the certificate file
// (atomically, with the file's mode; the key file is untouched, so the pair on disk
// matches at every instant) and loads it. It refuses when the key file on disk is no
// longer the key in use (new material put in place, not yet loaded with SIGHUP), rather
// than leave a certificate that does not match it.
func (l *ClientTLS) InstallRenewed(certPEM []byte) (*x509.Certificate, error) {
	l.installMu.Lock()
	defer l.installMu.Unlock()
	certs, err := pemfile.ParseCertificates("renewed certificate", "from the collector", certPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRenewedCertificate, err)
	}
	leaf, cur := certs[0], l.pair.Load()
	bad := func(reason string) error { return fmt.Errorf("%w: %s", ErrRenewedCertificate, reason) }
	switch {
	case !keyMatches(leaf, cur.PrivateKey):
		return nil, bad("it is not for this agent's key")
	case leaf.Subject.CommonName != cur.Leaf.Subject.CommonName || !slices.EqualFunc(leaf.URIs, cur.Leaf.URIs, func(a, b *url.URL) bool { return a.String() == b.String() }):
		return nil, bad(fmt.Sprintf("it names %q %v, not this host (%q %v)", leaf.Subject.CommonName, leaf.URIs, cur.Leaf.Subject.CommonName, cur.Leaf.URIs))
	case !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth):
		return nil, bad("it is not a client certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: l.base.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, bad(fmt.Sprintf("it does not verify against the collector CA: %v", err))
	}
	onDisk, err := pemfile.ReadPrivateKey(l.keyFile)
	if err != nil {
		return nil, fmt.Errorf("installing renewed certificate: %w", err)
	}
	if !keyMatches(cur.Leaf, onDisk) {
		return nil, fmt.Errorf("installing renewed certificate: key file %s changed since it was loaded: reload the agent (SIGHUP) before it renews", l.keyFile)
	}
	path := l.certFile
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved // replace the file a link points at, not the link
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := pemfile.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), mode); err != nil {
		return nil, fmt.Errorf("installing renewed certificate: %w", err)
	}
	if err := l.Reload(); err != nil {
		return nil, fmt.Errorf("installing renewed certificate: %w", err)
	}
	return leaf, nil
}

// keyMatches reports whether cert is for the public half of key.
func keyMatches(cert *x509.Certificate, key crypto.PrivateKey) bool {
	s, ok := key.(crypto.Signer)
	if !ok {
		return false
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(s.Public())
}
