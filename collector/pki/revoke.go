package pki

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Revocations is the set of revoked host certificates, by serial, that the collector
// refuses at the handshake (ServerTLS.UseRevocations) and on open streams. The
// collector refreshes it from the store, where `tripwire-collector pki revoke` records
// revocations for every replica. A nil *Revocations holds nothing. It is safe for
// concurrent use.
type Revocations struct {
	bySerial atomic.Pointer[map[string]string] // serial → reason
}

// Replace makes bySerial (serial in lowercase hex → reason) the revoked set.
func (r *Revocations) Replace(bySerial map[string]string) { r.bySerial.Store(&bySerial) }

// Reason says whether serial is revoked, and why.
func (r *Revocations) Reason(serial string) (string, bool) {
	if r == nil {
		return "", false
	}
	m := r.bySerial.Load()
	if m == nil {
		return "", false
	}
	reason, ok := (*m)[serial]
	return reason, ok
}

// SerialHex is a certificate's serial as revocations name it: lowercase hex.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// PeerCertificate returns the verified client certificate of a gRPC call's peer.
func PeerCertificate(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("no peer in context: %w", ErrNoIdentity)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, fmt.Errorf("peer %s has no verified client certificate: %w", p.Addr, ErrNoIdentity)
	}
	return info.State.VerifiedChains[0][0], nil
}
