package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// HostURIPrefix starts the URI SAN that names a host's id in its certificate:
// urn:tripwire:host:<uuid>.
const HostURIPrefix = "urn:tripwire:host:"

// ErrNoIdentity is wrapped by every error of HostIdentity and IdentityFromContext: the
// peer is not a Tripwire host. A gRPC handler answers it with codes.Unauthenticated.
var ErrNoIdentity = errors.New("no tripwire host identity")

// hostURI returns the URI SAN for a host id.
func hostURI(hostID string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: strings.TrimPrefix(HostURIPrefix, "urn:") + hostID}
}

// HostIdentity returns the host id and host name a host certificate carries: the id from
// its one urn:tripwire:host: URI SAN, which must hold a UUID in canonical lower-case
// form, and the name from its subject common name, which must pass ValidateHostname. It
// does not verify the certificate: call it on a certificate the TLS handshake verified.
func HostIdentity(cert *x509.Certificate) (hostID, hostname string, err error) {
	if cert == nil {
		return "", "", fmt.Errorf("reading host identity: no certificate: %w", ErrNoIdentity)
	}
	var ids []string
	for _, u := range cert.URIs {
		if s := u.String(); len(s) >= len(HostURIPrefix) && strings.EqualFold(s[:len(HostURIPrefix)], HostURIPrefix) {
			ids = append(ids, s[len(HostURIPrefix):])
		}
	}
	switch len(ids) {
	case 1:
	case 0:
		return "", "", fmt.Errorf("reading host identity of certificate %q (serial %x): no %s URI SAN: %w",
			cert.Subject.CommonName, cert.SerialNumber, HostURIPrefix, ErrNoIdentity)
	default:
		return "", "", fmt.Errorf("reading host identity of certificate %q (serial %x): %d %s URI SANs, want one: %w",
			cert.Subject.CommonName, cert.SerialNumber, len(ids), HostURIPrefix, ErrNoIdentity)
	}
	id, perr := uuid.Parse(ids[0])
	// uuid.Parse also takes braced, urn:uuid: and undashed forms; one id must have one
	// spelling, or the same host could appear under two keys in the store.
	if perr != nil || id.String() != ids[0] || id == uuid.Nil {
		return "", "", fmt.Errorf("reading host identity of certificate %q (serial %x): host id %q is not a canonical UUID: %w",
			cert.Subject.CommonName, cert.SerialNumber, ids[0], ErrNoIdentity)
	}
	if err := ValidateHostname(cert.Subject.CommonName); err != nil {
		return "", "", fmt.Errorf("reading host identity of certificate serial %x: %w: %w", cert.SerialNumber, err, ErrNoIdentity)
	}
	return ids[0], cert.Subject.CommonName, nil
}

// IdentityFromContext returns the host id and host name of the peer of a gRPC call,
// from the client certificate its TLS handshake verified. A call that did not come over
// verified mutual TLS is an error wrapping ErrNoIdentity.
func IdentityFromContext(ctx context.Context) (hostID, hostname string, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", "", fmt.Errorf("reading host identity: no peer in context: %w", ErrNoIdentity)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", "", fmt.Errorf("reading host identity: peer %s did not use TLS: %w", p.Addr, ErrNoIdentity)
	}
	// VerifiedChains is empty unless the handshake verified the client certificate;
	// PeerCertificates alone would also hold an unverified one.
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", "", fmt.Errorf("reading host identity: peer %s has no verified client certificate: %w", p.Addr, ErrNoIdentity)
	}
	return HostIdentity(info.State.VerifiedChains[0][0])
}
