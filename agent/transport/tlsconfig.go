// The agent's side of mutual TLS. The agent proves who it is with its client
// certificate, whose URI SAN names its host id (docs/adr/0006-pki-and-host-identity.md);
// the agent never reads that id, the collector does. The package comment is in
// shipper.go.

package transport

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tripwire-project/tripwire/internal/pemfile"
)

// Errors wrapped by LoadClientTLS and ClientTLS.Reload, besides those of reading a file
// (fs.ErrNotExist, fs.ErrPermission, ...).
var (
	// ErrNotPEM: the file holds no PEM block of the kind expected (certificate or key).
	ErrNotPEM = pemfile.ErrNotPEM
	// ErrKeyMismatch: the key file's key is not the certificate's.
	ErrKeyMismatch = errors.New("private key does not match certificate")
)

// ClientTLS holds the agent's TLS material for talking to the collector: the CA it
// trusts for the collector's certificate, and its own client key pair, which Reload
// swaps without a restart. It is safe for concurrent use.
type ClientTLS struct {
	certFile, keyFile string
	base              *tls.Config
	pair              atomic.Pointer[tls.Certificate]
	installMu         sync.Mutex // one InstallRenewed at a time (renew.go)
}

// LoadClientTLS loads the collector CA from caFile (only these CAs are trusted for the
// collector's certificate, never the system roots) and the agent's certificate and key
// from certFile and keyFile. serverName is the name checked in the collector's
// certificate; a "host:port" collector address is accepted and its host part used, and
// "" lets gRPC use the host part of the address it dials. Errors name the file that
// failed: missing or unreadable (wrapping the fs error), not PEM (ErrNotPEM), or a key
// that does not match its certificate (ErrKeyMismatch).
func LoadClientTLS(caFile, certFile, keyFile, serverName string) (*ClientTLS, error) {
	roots, err := loadRoots(caFile)
	if err != nil {
		return nil, fmt.Errorf("loading client TLS: %w", err)
	}
	l := &ClientTLS{
		certFile: certFile,
		keyFile:  keyFile,
		base: &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    roots,
			ServerName: hostPart(serverName),
		},
	}
	l.base.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return l.pair.Load(), nil
	}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload reads the certificate and key files again and, if they make a valid pair,
// presents the new certificate on every later handshake; an open connection keeps the
// one it was made with. On error the previous pair stays in use. Call it on SIGHUP. The
// CA file is read only by LoadClientTLS: trusting a new collector CA takes a restart.
func (l *ClientTLS) Reload() error {
	pair, err := loadKeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("loading client TLS: %w", err)
	}
	l.pair.Store(pair)
	return nil
}

// Certificate returns the client certificate in use, e.g. to log or export its expiry.
func (l *ClientTLS) Certificate() *x509.Certificate {
	return l.pair.Load().Leaf
}

// Config returns the configuration to dial the collector with, e.g. through
// credentials.NewTLS: TLS 1.3 only, the collector CA as the only root, and the client
// certificate current at each handshake.
func (l *ClientTLS) Config() *tls.Config {
	return l.base.Clone()
}

// hostPart returns the host of a "host:port" address, or the name itself.
func hostPart(name string) string {
	if host, _, err := net.SplitHostPort(name); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
}

// loadRoots reads a PEM bundle of CA certificates.
func loadRoots(path string) (*x509.CertPool, error) {
	certs, err := pemfile.ReadCertificates("CA file", path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// loadKeyPair reads a certificate (chain) and its private key and checks they belong
// together and that the certificate may authenticate a client.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certs, err := pemfile.ReadCertificates("certificate file", certFile)
	if err != nil {
		return nil, err
	}
	key, err := pemfile.ReadPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("key file %s, certificate file %s: %w", keyFile, certFile, ErrKeyMismatch)
	}
	// The collector would refuse it at the handshake; say so here, naming the file.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, fmt.Errorf("certificate file %s: not a client certificate (no client-authentication extended key usage)", certFile)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}
