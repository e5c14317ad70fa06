package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// DefaultAgentCertValidity is how long the certificates the collector signs for agents
// (at enrolment and at each renewal) are valid unless configured: short enough that a
// stolen key is worth a day at most, long enough that an agent cut off from its
// collector over a weekend night still renews before it expires (agents renew once two
// thirds of the lifetime have passed).
const DefaultAgentCertValidity = 24 * time.Hour

// ErrBadCSR is wrapped by every *CSRError.
var ErrBadCSR = errors.New("bad certificate signing request")

// CSRError says why a certificate signing request is refused. Its message is meant for
// the host that sent it: it names what is wrong with the request, never anything about
// a token.
type CSRError struct {
	Reason string
}

// Error implements error.
func (e *CSRError) Error() string { return "certificate signing request refused: " + e.Reason }

// Unwrap makes errors.Is(err, ErrBadCSR) hold.
func (e *CSRError) Unwrap() error { return ErrBadCSR }

// maxCSRBytes bounds a signing request; a P-256 request is about 250 bytes.
const maxCSRBytes = 16 << 10

// ParseCSR parses a PKCS #10 certificate signing request (DER) from a host and checks
// it: it is signed by the key it carries (proof that the sender holds the key), and that
// key is ECDSA P-256, the only kind the collector signs (ADR 0006). Only the public key
// is used: the subject, extensions and SANs of a request are ignored, since the
// certificate's names come from the token or the certificate being renewed. Errors are
// *CSRError.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, &CSRError{Reason: "empty"}
	}
	if len(der) > maxCSRBytes {
		return nil, &CSRError{Reason: fmt.Sprintf("%d bytes, more than %d", len(der), maxCSRBytes)}
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, &CSRError{Reason: fmt.Sprintf("not a PKCS #10 request in DER: %v", err)}
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, &CSRError{Reason: fmt.Sprintf("the key is %s; only ECDSA P-256 keys are accepted", keyKind(csr.PublicKey))}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &CSRError{Reason: fmt.Sprintf("its signature does not verify with its own key: %v", err)}
	}
	return csr, nil
}

// CheckRenewalKey checks that a renewal request is for the key of the certificate being
// renewed: renewal extends a key's life, it never moves an identity to another key
// (which would let whoever briefly holds a stream make a key of their own for it).
func CheckRenewalKey(csr *x509.CertificateRequest, current *x509.Certificate) error {
	if !publicKeysEqual(current.PublicKey, csr.PublicKey) {
		return &CSRError{Reason: fmt.Sprintf("its key is not the key of the certificate this stream was opened with (serial %s): renewal keeps the key", SerialHex(current))}
	}
	return nil
}

// keyKind names a public key's type for messages.
func keyKind(k any) string {
	if ec, ok := k.(*ecdsa.PublicKey); ok {
		return "ECDSA " + ec.Curve.Params().Name
	}
	return fmt.Sprintf("%T", k)
}

// Signer signs host certificates for keys the hosts made themselves — at enrolment and
// at each renewal — with the CA of a PKI directory, each valid for one configured time.
// Every collector replica loads the same directory, so any replica can sign. It is safe
// for concurrent use.
type Signer struct {
	dir      string
	validity time.Duration
	ca       atomic.Pointer[authority]
}

// SignedCert is a host certificate a Signer made.
type SignedCert struct {
	// Certificate is the parsed certificate; PEM its encoded form, to send to the host.
	Certificate *x509.Certificate
	PEM         []byte
}

// NewSigner loads the CA (ca.crt and ca.key) of the PKI directory dir, to sign
// certificates valid for validity. The validity must be positive and end before the CA
// does: a certificate that outlived its CA would be cut short without anyone noticing.
func NewSigner(dir string, validity time.Duration) (*Signer, error) {
	s := &Signer{dir: dir, validity: validity}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// NewIdleSigner returns a Signer of the PKI directory dir that holds no CA yet: it signs
// nothing (Ready is false) until a Reload finds the CA — for a collector started while
// the CA key was kept offline, once an operator puts it in place and reloads (SIGHUP).
func NewIdleSigner(dir string, validity time.Duration) *Signer {
	return &Signer{dir: dir, validity: validity}
}

// Ready reports whether the Signer holds a CA to sign with. The CA accessors
// (CACertificate, CAPEM, CAFingerprint) need one.
func (s *Signer) Ready() bool { return s.ca.Load() != nil }

// errNoCA is SignHost's refusal on a Signer that holds no CA.
var errNoCA = errors.New("signing host certificate: this collector holds no CA key to sign with")

// Reload reads the CA again (SIGHUP). On error the CA loaded before, if any, stays in
// use.
func (s *Signer) Reload() error {
	ca, err := loadCA(s.dir)
	if err != nil {
		return fmt.Errorf("loading the CA to sign agent certificates: %w", err)
	}
	if err := CheckAgentCertValidity(s.validity, ca.cert, time.Now()); err != nil {
		return fmt.Errorf("loading the CA to sign agent certificates: %w", err)
	}
	s.ca.Store(ca)
	return nil
}

// CheckAgentCertValidity checks a validity for the certificates signed for agents
// against the CA that signs them, at now: positive, at least a minute, and ending before
// the CA does (not checked when ca is nil). The error is an *InvalidFieldError.
func CheckAgentCertValidity(validity time.Duration, ca *x509.Certificate, now time.Time) error {
	bad := func(reason string) error {
		return &InvalidFieldError{Field: "agent certificate validity", Value: validity.String(), Reason: reason}
	}
	switch {
	case validity <= 0:
		return bad("must be positive")
	case validity < time.Minute:
		return bad("must be at least 1m: agents renew on their 5 s heartbeat, once two thirds of the lifetime have passed")
	case ca == nil:
	case validity >= ca.NotAfter.Sub(now):
		return bad(fmt.Sprintf("must be shorter than the CA's remaining life (%s, until %s)",
			ca.NotAfter.Sub(now).Round(time.Hour), ca.NotAfter.UTC().Format(time.RFC3339)))
	}
	return nil
}

// Validity is how long the certificates the Signer makes are valid.
func (s *Signer) Validity() time.Duration { return s.validity }

// CACertificate returns the CA certificate that signs, to hand to enrolling hosts.
func (s *Signer) CACertificate() *x509.Certificate { return s.ca.Load().cert }

// CAPEM returns the CA certificate that signs, PEM-encoded.
func (s *Signer) CAPEM() []byte { return encodeCert(s.ca.Load().cert.Raw) }

// CAFingerprint returns the SHA-256 of the signing CA certificate's DER: the pin a join
// token carries.
func (s *Signer) CAFingerprint() [sha256.Size]byte { return sha256.Sum256(s.ca.Load().cert.Raw) }

// SignHost signs a host certificate for the key of csr (checked by ParseCSR) naming
// hostID and hostname, in the shape of Issue's certificates (see hostTemplate), valid
// for the Signer's validity from now.
func (s *Signer) SignHost(csr *x509.CertificateRequest, hostID, hostname string) (SignedCert, error) {
	if err := ValidateHostname(hostname); err != nil {
		return SignedCert{}, fmt.Errorf("signing host certificate: %w", err)
	}
	ca := s.ca.Load()
	if ca == nil {
		return SignedCert{}, errNoCA
	}
	der, err := ca.sign(hostTemplate(hostID, hostname), csr.PublicKey, s.validity)
	if err != nil {
		return SignedCert{}, fmt.Errorf("signing host certificate for %s: %w", hostname, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return SignedCert{}, fmt.Errorf("signing host certificate for %s: parsing the new certificate: %w", hostname, err)
	}
	// Refuse to hand out what the collector's own handshake would refuse.
	if _, _, err := HostIdentity(cert); err != nil {
		return SignedCert{}, fmt.Errorf("signing host certificate for %s: %w", hostname, err)
	}
	return SignedCert{Certificate: cert, PEM: encodeCert(der)}, nil
}
