package pki

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Revocations is the set of revoked host certificates that the collector refuses at the
// handshake (ServerTLS.UseRevocations) and on open streams: by serial, and by key. A
// revoked key refuses every certificate that carries it, whatever its serial: renewal
// keeps the key (ADR 0013), so the certificates a host renewed before the revocation,
// which a thief of its key may hold too, fall with the one revoked. The collector
// refreshes the set from the store, where `tripwire-collector pki revoke` records
// revocations for every replica. A nil *Revocations holds nothing. It is safe for
// concurrent use.
type Revocations struct {
	set atomic.Pointer[revokedSet]
}

type revokedSet struct {
	bySerial, byKey map[string]string // serial or KeyHash → reason
}

// Replace makes the revoked set bySerial (serial in lowercase hex → reason) and byKey
// (KeyHash → reason). Either may be nil.
func (r *Revocations) Replace(bySerial, byKey map[string]string) {
	r.set.Store(&revokedSet{bySerial: bySerial, byKey: byKey})
}

// Reason says whether cert is revoked, by its serial or by its key, and why.
func (r *Revocations) Reason(cert *x509.Certificate) (string, bool) {
	if r == nil {
		return "", false
	}
	set := r.set.Load()
	if set == nil {
		return "", false
	}
	if reason, ok := set.bySerial[SerialHex(cert)]; ok {
		return reason, true
	}
	if reason, ok := set.byKey[KeyHash(cert)]; ok {
		return "its key is revoked: " + reason, true
	}
	return "", false
}

// KeyHash names a certificate's key as revocations do: the SHA-256 of its
// SubjectPublicKeyInfo, in lowercase hex (as `openssl x509 -pubkey | openssl pkey
// -pubin -outform der | sha256sum` prints it).
func KeyHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
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
