package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tripwire-project/tripwire/internal/pemfile"
)

// Validity periods and the clock skew allowance.
const (
	// CAValidity is how long a CA made by Init is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultServerValidity is how long a server certificate is valid unless told.
	DefaultServerValidity = 365 * 24 * time.Hour
	// DefaultHostValidity is how long a host certificate is valid unless told.
	DefaultHostValidity = 365 * 24 * time.Hour
	// backdate is subtracted from NotBefore so that a host whose clock is a little
	// behind the collector's accepts a certificate issued a moment ago.
	backdate = 5 * time.Minute
)

// InitOptions tunes Init.
type InitOptions struct {
	// ServerNames are the DNS names and IP addresses agents use to reach the collector,
	// written as the server certificate's SANs. Empty means "localhost", "127.0.0.1",
	// "::1" and this machine's host name.
	ServerNames []string
	// ServerValidity is how long the server certificate is valid; zero means
	// DefaultServerValidity.
	ServerValidity time.Duration
	// Force replaces an existing CA. Every certificate issued by the old CA stops being
	// accepted, so every host must be issued again.
	Force bool
}

// ServerOptions tunes IssueServer.
type ServerOptions struct {
	// Names are the server certificate's DNS names and IP addresses; empty means the
	// defaults described on InitOptions.ServerNames.
	Names []string
	// Validity is how long the certificate is valid; zero means DefaultServerValidity.
	Validity time.Duration
}

// Init makes a PKI directory: a new CA (ECDSA P-256, self-signed, valid CAValidity,
// allowed to sign only end-entity certificates) in dir/ca.crt and dir/ca.key, and a
// server certificate for the collector signed by it in dir/server.crt and
// dir/server.key. It refuses to replace an existing CA unless opts.Force; the error then
// wraps fs.ErrExist and names the file.
func Init(dir string, opts InitOptions) error {
	caCert := filepath.Join(dir, CACertFile)
	caKey := filepath.Join(dir, CAKeyFile)
	if !opts.Force {
		for _, p := range []string{caCert, caKey} {
			_, err := os.Lstat(p)
			if err == nil {
				return fmt.Errorf("initialising PKI: %s: %w (a CA is already there; forcing a new one invalidates every issued certificate)", p, fs.ErrExist)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("initialising PKI: checking %s: %w", p, err)
			}
		}
	}
	// Check the server names before anything is written.
	names, err := serverNames(opts.ServerNames)
	if err != nil {
		return fmt.Errorf("initialising PKI: %w", err)
	}
	if err := ensureDir(dir); err != nil {
		return fmt.Errorf("initialising PKI: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("initialising PKI: generating CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return fmt.Errorf("initialising PKI: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Tripwire"},
			// The serial suffix tells two CAs apart in error messages and logs.
			CommonName: fmt.Sprintf("Tripwire CA %.8x", serial.Bytes()),
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("initialising PKI: creating CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return fmt.Errorf("initialising PKI: %w", err)
	}
	// Key first: a crash in between leaves a key without a certificate, which the next
	// Init still refuses to overwrite without Force.
	if err := pemfile.WriteFileAtomic(caKey, keyPEM, keyMode); err != nil {
		return fmt.Errorf("initialising PKI: %w", err)
	}
	if err := pemfile.WriteFileAtomic(caCert, encodeCert(der), certMode); err != nil {
		return fmt.Errorf("initialising PKI: %w", err)
	}
	if err := IssueServer(dir, ServerOptions{Names: names, Validity: opts.ServerValidity}); err != nil {
		return fmt.Errorf("initialising PKI: %w", err)
	}
	return nil
}

// IssueServer issues a new server certificate and key for the collector from the CA in
// dir, replacing dir/server.crt and dir/server.key. Use it to renew the server
// certificate or change its names without touching the CA; a running collector picks
// the new one up with ServerTLS.Reload.
func IssueServer(dir string, opts ServerOptions) error {
	names, err := serverNames(opts.Names)
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultServerValidity
	}
	if validity < 0 {
		return fmt.Errorf("issuing server certificate: %w", &InvalidFieldError{Field: "validity", Value: validity.String(), Reason: "must be positive"})
	}
	ca, err := loadCA(dir)
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"Tripwire"}, CommonName: "tripwire-collector"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, key, err := ca.signNewKey(tmpl, validity)
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	if err := pemfile.WriteFileAtomic(filepath.Join(dir, ServerKeyFile), keyPEM, keyMode); err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	if err := pemfile.WriteFileAtomic(filepath.Join(dir, ServerCertFile), encodeCert(der), certMode); err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	return nil
}

// serverNames validates names, or returns the defaults when there are none.
func serverNames(names []string) ([]string, error) {
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
		// Without a host name the loopback names still make a working certificate.
		if h, err := os.Hostname(); err == nil && validateName("server name", h) == nil {
			names = append(names, h)
		}
	}
	seen := make(map[string]bool, len(names))
	out := make([]string, 0, len(names))
	for _, n := range names {
		if net.ParseIP(n) == nil {
			if err := validateName("server name", n); err != nil {
				return nil, err
			}
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// authority is a loaded CA: its certificate (and PEM, to hand out) and its key.
type authority struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// loadCA reads and checks dir/ca.crt and dir/ca.key.
func loadCA(dir string) (*authority, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("loading CA: reading %s: %w", certPath, err)
	}
	certs, err := pemfile.ParseCertificates("certificate", certPath, certPEM)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("loading CA: %s is not a CA certificate", certPath)
	}
	key, err := pemfile.ReadPrivateKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("loading CA: key %s does not match certificate %s", keyPath, certPath)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("loading CA: %s expired on %s", certPath, cert.NotAfter.Format(time.RFC3339))
	}
	return &authority{cert: cert, certPEM: certPEM, key: key}, nil
}

// signNewKey signs tmpl (see sign) for a new ECDSA P-256 key made here: for the
// certificates whose key the collector makes (its server certificate, pki issue).
func (a *authority) signNewKey(tmpl *x509.Certificate, validity time.Duration) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	der, err := a.sign(tmpl, key.Public(), validity)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// sign completes tmpl (serial, validity) and signs it with the CA for the public key
// pub. The validity is cut at the CA's own expiry, after which no chain would verify
// anyway.
func (a *authority) sign(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdateFor(validity))
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(a.cert.NotAfter) {
		tmpl.NotAfter = a.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	return der, nil
}

// backdateFor is how far before now a certificate valid for validity starts: backdate,
// but at most a tenth of the validity. Agents renew once two thirds of NotBefore to
// NotAfter have passed, so a full backdate on a certificate of a few minutes would make
// it due for renewal the moment it is issued.
func backdateFor(validity time.Duration) time.Duration {
	return min(backdate, validity/10)
}

// newSerial returns a random, positive, non-zero 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
