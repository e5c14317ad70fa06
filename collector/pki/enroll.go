package pki

import (
	"crypto/tls"
	"crypto/x509"
)

// EnrollConfig returns the TLS configuration of the collector's enrolment listener, to
// pass to credentials.NewTLS. It serves the same server certificate as Config, from the
// material current at each handshake (so ServerTLS.Reload applies to it too), with two
// differences:
//
//   - it asks for no client certificate: a host enrolling has none yet, and the join
//     token it sends inside the call is its proof;
//   - it presents the whole chain up to and including the CA, so that a host that knows
//     only the CA's SHA-256 (the pin in its token) can find the CA, check the pin and
//     verify the server certificate against it before it sends the token's secret.
//
// Like Config it requires TLS 1.3 and negotiates only ALPN "h2".
func (l *ServerTLS) EnrollConfig() *tls.Config {
	cfg := l.current.Load().enroll.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return l.current.Load().enroll, nil
	}
	return cfg
}

// enrollConfig derives the enrolment listener's configuration from the ingest one:
// chain is the server certificate's verified chain, leaf first and CA last.
func enrollConfig(ingest *tls.Config, chain []*x509.Certificate) *tls.Config {
	cfg := ingest.Clone()
	cfg.ClientAuth = tls.NoClientCert
	cfg.ClientCAs = nil
	cfg.VerifyConnection = nil
	cert := ingest.Certificates[0]
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	cert.Certificate = raw
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}
