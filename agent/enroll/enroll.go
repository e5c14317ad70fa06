// Package enroll is the host's side of enrolment (`tripwire enroll`): it makes the
// host's key, which never leaves the host, and trades a one-time join token and a
// signing request for a certificate at the collector's enrolment listener; then it writes
// the CA, the certificate and the key where the agent's config will name them.
//
// The token (proto/jointoken) carries the SHA-256 of the collector's CA. The TLS
// handshake with the enrolment listener, which presents its chain up to the CA, is
// accepted only if a certificate in that chain has the pinned fingerprint and the
// server's certificate verifies against it for the dialled name; until then nothing,
// and above all not the token's secret, is sent. The answer is checked the same way: the
// CA returned must have the pin, and the certificate must be for this key and verify
// against that CA. See docs/adr/0013-enrolment-and-short-lived-certificates.md.
package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/proto/jointoken"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// DefaultDir is where Enroll writes the host's files unless told.
const DefaultDir = "/etc/tripwire/pki"

// File names Enroll writes in its directory: the names `pki issue` gives them too.
const (
	CAFile   = "ca.crt"
	CertFile = "agent.crt"
	KeyFile  = "agent.key"
)

// DefaultTimeout bounds one enrolment: the handshake and the one call.
const DefaultTimeout = 30 * time.Second

// hostURIPrefix starts the URI SAN that names a host's id in its certificate (the
// collector's pki.HostURIPrefix; the agent does not import collector code).
const hostURIPrefix = "urn:tripwire:host:"

// Options configure Enroll.
type Options struct {
	// Collector is the collector's enrolment address (its listen.enroll), host:port.
	Collector string
	// Token is the join token as `tripwire-collector pki token` printed it.
	Token string
	// Dir receives ca.crt, agent.crt and agent.key (default DefaultDir); it is created
	// 0700.
	Dir string
	// ServerName is the name checked in the collector's certificate (default: the host
	// part of Collector).
	ServerName string
	// Force replaces an existing agent.key. Without it an existing key is refused: it
	// belongs to a host already enrolled or issued a certificate.
	Force bool
	// Timeout bounds the enrolment (default DefaultTimeout).
	Timeout time.Duration
	// AgentVersion is sent to the collector, for its log.
	AgentVersion string
}

// Result is what Enroll wrote, and for which host.
type Result struct {
	HostID, Hostname          string
	Serial                    string // lowercase hex
	NotBefore, NotAfter       time.Time
	CAFile, CertFile, KeyFile string // absolute paths
}

// PinMismatchError says that the server at Addr did not prove to be the collector the
// token was made for: no certificate it presented has the token's CA fingerprint, or its
// certificate does not verify against that CA. The token's secret was not sent.
type PinMismatchError struct {
	Addr   string
	Pin    string // hex
	Reason string
}

// Error implements error.
func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("the server at %s is not the collector this token was made for (%s; the token pins CA sha256 %s): "+
		"nothing was sent; check the address, or make a token on the right collector", e.Addr, e.Reason, e.Pin)
}

// RefusedError says that the collector answered, and refused the enrolment.
type RefusedError struct {
	Code    codes.Code
	Message string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("the collector refused the enrolment (%s): %s", e.Code, e.Message)
}

// Enroll makes a key, enrols it with the collector and writes the host's files. Errors
// are a *jointoken.ParseError for a malformed token, an error wrapping fs.ErrExist for
// an existing key without Force, a *PinMismatchError when the server is not the token's
// collector, a *RefusedError when the collector refused, or an error naming what else
// failed. Nothing is written unless enrolment succeeds.
func Enroll(ctx context.Context, o Options) (Result, error) {
	tok, err := jointoken.Parse(o.Token)
	if err != nil {
		return Result{}, err
	}
	host, _, err := net.SplitHostPort(o.Collector)
	if err != nil || host == "" {
		return Result{}, fmt.Errorf("enrolling: collector address %q is not host:port (the collector's listen.enroll)", o.Collector)
	}
	if o.ServerName == "" {
		o.ServerName = host
	}
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return Result{}, fmt.Errorf("enrolling: %w", err)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	keyPath := filepath.Join(o.Dir, KeyFile)
	if err := refuseExisting(keyPath, o.Force); err != nil {
		return Result{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Result{}, fmt.Errorf("enrolling: generating the host key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return Result{}, fmt.Errorf("enrolling: creating the signing request: %w", err)
	}
	resp, err := call(ctx, o, tok, csr)
	if err != nil {
		return Result{}, err
	}
	ca, cert, err := checkResponse(resp, tok, key)
	if err != nil {
		return Result{}, fmt.Errorf("enrolling: the collector's answer: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Result{}, fmt.Errorf("enrolling: encoding the key: %w", err)
	}
	r := Result{
		HostID: resp.GetHostId(), Hostname: resp.GetHostname(), Serial: cert.SerialNumber.Text(16),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		CAFile: filepath.Join(o.Dir, CAFile), CertFile: filepath.Join(o.Dir, CertFile), KeyFile: keyPath,
	}
	if err := writeFiles(o.Dir, r, ca, cert, keyDER); err != nil {
		return Result{}, fmt.Errorf("enrolling: %w (the token is spent: make a new one)", err)
	}
	return r, nil
}

// refuseExisting refuses to replace a key unless force.
func refuseExisting(keyPath string, force bool) error {
	_, err := os.Lstat(keyPath)
	switch {
	case err == nil && !force:
		return fmt.Errorf("enrolling: %s: %w: this host already has a key; --force replaces it, and the host becomes a new host with a fresh chain", keyPath, fs.ErrExist)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("enrolling: checking %s: %w", keyPath, err)
	}
	return nil
}

// call dials the enrolment listener, accepting it only if it proves the token's CA, and
// sends the request.
func call(ctx context.Context, o Options, tok jointoken.Token, csr []byte) (*tripwirev1.EnrollResponse, error) {
	var (
		mu     sync.Mutex
		pinErr *PinMismatchError
	)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: o.ServerName,
		// The system roots and the usual verification do not apply: the token names the
		// one CA to trust, and VerifyConnection checks the chain against it.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyPinned(cs, tok.CAPin, o.ServerName); err != nil {
				mu.Lock()
				pinErr = &PinMismatchError{Addr: o.Collector, Pin: tok.PinHex(), Reason: err.Error()}
				mu.Unlock()
				return err
			}
			return nil
		},
	}
	conn, err := grpc.NewClient(o.Collector, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("enrolling: creating gRPC client for %s: %w", o.Collector, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	resp, err := tripwirev1.NewEnrollServiceClient(conn).Enroll(ctx, &tripwirev1.EnrollRequest{
		Token: tok.String(), CsrDer: csr, ProtocolVersion: tripwirev1.ProtocolVersion, AgentVersion: o.AgentVersion,
	})
	if err == nil {
		return resp, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if pinErr != nil {
		return nil, pinErr
	}
	switch st := status.Convert(err); st.Code() {
	case codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition, codes.ResourceExhausted:
		return nil, &RefusedError{Code: st.Code(), Message: st.Message()}
	case codes.DeadlineExceeded:
		return nil, fmt.Errorf("enrolling: no answer from %s within %s (is it the collector's listen.enroll?): %w", o.Collector, o.Timeout, err)
	}
	return nil, fmt.Errorf("enrolling at %s (the collector's listen.enroll): %w", o.Collector, err)
}

// verifyPinned accepts a server whose presented chain holds a CA certificate with the
// pinned SHA-256 and whose certificate verifies against that CA, for serverName, as a
// TLS server.
func verifyPinned(cs tls.ConnectionState, pin [sha256.Size]byte, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("it presented no certificate")
	}
	var ca *x509.Certificate
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		if sha256.Sum256(c.Raw) == pin && c.IsCA {
			ca = c
		} else {
			inter.AddCert(c)
		}
	}
	if ca == nil {
		return errors.New("none of the certificates it presented is the pinned CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: serverName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("its certificate does not verify against the pinned CA: %w", err)
	}
	return nil
}

// checkResponse checks the collector's answer: the CA has the pin, and the certificate
// is a client certificate for key, signed by that CA, naming the host id and name of the
// answer.
func checkResponse(resp *tripwirev1.EnrollResponse, tok jointoken.Token, key *ecdsa.PrivateKey) (ca, cert *x509.Certificate, err error) {
	cas, err := pemfile.ParseCertificates("CA", "answer", resp.GetCaPem())
	if err != nil {
		return nil, nil, err
	}
	ca = cas[0]
	if sha256.Sum256(ca.Raw) != tok.CAPin {
		sum := sha256.Sum256(ca.Raw)
		return nil, nil, fmt.Errorf("its CA (sha256 %s) is not the one the token pins (%s)", hex.EncodeToString(sum[:]), tok.PinHex())
	}
	certs, err := pemfile.ParseCertificates("certificate", "answer", resp.GetCertificatePem())
	if err != nil {
		return nil, nil, err
	}
	cert = certs[0]
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the certificate is not for this host's key")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, nil, fmt.Errorf("the certificate does not verify as a client certificate of the pinned CA: %w", err)
	}
	if len(cert.URIs) != 1 || !strings.EqualFold(cert.URIs[0].String(), hostURIPrefix+resp.GetHostId()) || cert.Subject.CommonName != resp.GetHostname() {
		return nil, nil, fmt.Errorf("the certificate names %q %v, not host %q (%s)", cert.Subject.CommonName, cert.URIs, resp.GetHostname(), resp.GetHostId())
	}
	return ca, cert, nil
}

// writeFiles writes the CA, the certificate and, last, the key (0600) into dir (0700),
// each atomically: the key's presence is what marks the host enrolled.
func writeFiles(dir string, r Result, ca, cert *x509.Certificate, keyDER []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", dir, err)
	}
	var certPEM bytes.Buffer
	if err := pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}); err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{r.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644},
		{r.CertFile, certPEM.Bytes(), 0o644},
		{r.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	} {
		if err := pemfile.WriteFileAtomic(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}
