package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/tripwire-project/tripwire/internal/pemfile"
)

// ServerTLS holds the collector's mutual-TLS material — the CA that host
// certificates must chain to and the server's own key pair — and swaps it on Reload
// without a restart. Connections already established keep the material they were made
// with; every new handshake uses the latest. It is safe for concurrent use.
type ServerTLS struct {
	caFile, certFile, keyFile string
	current                   atomic.Pointer[serverSnapshot]
	revoked                   atomic.Pointer[revocationCheck]
}

// revocationCheck is the revoked set handshakes consult, and who hears of a refusal.
type revocationCheck struct {
	set       *Revocations
	onRefused func(leaf *x509.Certificate, reason, from string)
}

// serverSnapshot is one immutable generation of the server's TLS material.
type serverSnapshot struct {
	config *tls.Config
	leaf   *x509.Certificate
	enroll *tls.Config // for the enrolment listener (enroll.go)
}

// LoadServerTLS loads dir/ca.crt, dir/server.crt and dir/server.key, the files Init
// writes.
func LoadServerTLS(dir string) (*ServerTLS, error) {
	return NewServerTLS(filepath.Join(dir, CACertFile), filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
}

// NewServerTLS loads the CA bundle that host certificates must chain to and the
// server's certificate and key from the named files. caFile may hold several CAs, to
// roll from one CA to the next.
func NewServerTLS(caFile, certFile, keyFile string) (*ServerTLS, error) {
	l := &ServerTLS{caFile: caFile, certFile: certFile, keyFile: keyFile}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload reads the files again and, if they make a usable configuration, makes new
// handshakes use them. On error the previous material stays in use. Call it on SIGHUP.
func (l *ServerTLS) Reload() error {
	snap, err := loadServerSnapshot(l.caFile, l.certFile, l.keyFile, func(cs tls.ConnectionState) error { return l.verifyConnection(cs, "") })
	if err != nil {
		return fmt.Errorf("loading server TLS: %w", err)
	}
	l.current.Store(snap)
	return nil
}

// Certificate returns the server certificate in use, e.g. to export its expiry as a
// metric.
func (l *ServerTLS) Certificate() *x509.Certificate {
	return l.current.Load().leaf
}

// Config returns the configuration for the collector's gRPC listener, to pass to
// credentials.NewTLS. Each handshake is served from the material current at that moment
// (through GetConfigForClient), so a Reload applies to every later connection. The
// configuration requires TLS 1.3, a client certificate that chains to the CA, has the
// client-authentication extended key usage and carries a host identity (see
// HostIdentity); anything else fails the handshake before a gRPC handler runs. It
// negotiates only ALPN "h2": it is for gRPC, not for the HTTP API.
func (l *ServerTLS) Config() *tls.Config {
	snap := l.current.Load()
	cfg := snap.config.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := l.current.Load().config.Clone()
		from := ""
		if hello.Conn != nil {
			from = hello.Conn.RemoteAddr().String()
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error { return l.verifyConnection(cs, from) }
		return c, nil
	}
	return cfg
}

// loadServerSnapshot reads and cross-checks the three files.
func loadServerSnapshot(caFile, certFile, keyFile string, verify func(tls.ConnectionState) error) (*serverSnapshot, error) {
	cas, err := pemfile.ReadCertificates("certificate", caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		if !c.IsCA {
			return nil, fmt.Errorf("loading CA bundle %s: certificate %q is not a CA", caFile, c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	certs, err := pemfile.ReadCertificates("certificate", certFile)
	if err != nil {
		return nil, err
	}
	key, err := pemfile.ReadPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, fmt.Errorf("server key %s does not match certificate %s", keyFile, certFile)
	}
	// A server certificate the agents would refuse is better refused here, where the
	// operator sees which file is wrong.
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("verifying server certificate %s against CA bundle %s: %w", certFile, caFile, err)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: key, Leaf: leaf}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// The config returned by GetConfigForClient is used as it is, so it must name
		// the protocol gRPC clients insist on.
		NextProtos: []string{"h2"},
		// Every connection gets a full handshake, so every connection has its chain
		// verified against the current CA bundle (and, later, revocation). Agents hold
		// one long-lived connection; resumption would save nothing worth that.
		SessionTicketsDisabled: true,
		VerifyConnection:       verify,
	}
	return &serverSnapshot{config: cfg, leaf: leaf, enroll: enrollConfig(cfg, chains[0])}, nil
}

// UseRevocations makes every later handshake refuse the certificates r holds, and call
// onRefused (if not nil) for each it refuses, with the reason and the client's address:
// a revoked certificate in use is news. onRefused runs inside the handshake: it must
// not block.
func (l *ServerTLS) UseRevocations(r *Revocations, onRefused func(leaf *x509.Certificate, reason, from string)) {
	l.revoked.Store(&revocationCheck{set: r, onRefused: onRefused})
}

// verifyConnection is verifyHostConnection, then the revocation check, for a client
// at the address from ("" when unknown).
func (l *ServerTLS) verifyConnection(cs tls.ConnectionState, from string) error {
	if err := verifyHostConnection(cs); err != nil {
		return err
	}
	leaf := cs.VerifiedChains[0][0]
	rc := l.revoked.Load()
	if rc == nil {
		return nil
	}
	if reason, revoked := rc.set.Reason(leaf); revoked {
		if rc.onRefused != nil {
			rc.onRefused(leaf, reason, from)
		}
		return fmt.Errorf("host certificate %q (serial %s) is revoked: %s", leaf.Subject.CommonName, SerialHex(leaf), reason)
	}
	return nil
}

// verifyHostConnection accepts a client only if its verified certificate is a host
// certificate: client-authentication usage (not merely "any"), not a CA, and a host
// identity HostIdentity can read. It runs after chain verification on every handshake.
func verifyHostConnection(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return errors.New("verifying host certificate: no verified chain")
	}
	leaf := cs.VerifiedChains[0][0]
	if leaf.IsCA {
		return fmt.Errorf("verifying host certificate %q (serial %x): it is a CA certificate", leaf.Subject.CommonName, leaf.SerialNumber)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("verifying host certificate %q (serial %x): no client-authentication extended key usage", leaf.Subject.CommonName, leaf.SerialNumber)
	}
	if _, _, err := HostIdentity(leaf); err != nil {
		return fmt.Errorf("verifying host certificate: %w", err)
	}
	return nil
}
