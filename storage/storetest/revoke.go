package storetest

import (
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// testCertsAndRevocation: a host's registration records its certificate, a revocation
// is listed once, and revoking again keeps the first record.
func testCertsAndRevocation(t *testing.T, s storage.Store) {
	notAfter := seen(24 * time.Hour) // TIMESTAMPTZ keeps microseconds
	mustRegister(t, s, storage.Host{HostID: "h-cert", Hostname: "certhost", Watchers: "[]", LastSeen: t0, CertSerial: "0a1b", CertNotAfter: &notAfter})
	hosts, err := s.Hosts(t.Context())
	if err != nil || len(hosts) != 1 || hosts[0].CertSerial != "0a1b" || hosts[0].CertNotAfter == nil || !hosts[0].CertNotAfter.Equal(notAfter) {
		t.Fatalf("Hosts = %+v, %v; want cert 0a1b expiring %v", hosts, err, notAfter)
	}
	if got, err := s.Revoked(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("Revoked on a new store = %+v, %v", got, err)
	}
	first := storage.RevokedCert{Serial: "0a1b", HostID: "h-cert", Hostname: "certhost", RevokedAt: seen(time.Hour), Reason: "laptop stolen"}
	for _, c := range []storage.RevokedCert{first, {Serial: "0a1b", HostID: "h-cert", Hostname: "certhost", RevokedAt: t0.Add(2 * time.Hour), Reason: "again"}} {
		if err := s.Revoke(t.Context(), c); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	got, err := s.Revoked(t.Context())
	if err != nil || len(got) != 1 || got[0].Reason != first.Reason || !got[0].RevokedAt.Equal(first.RevokedAt) || got[0].Hostname != "certhost" {
		t.Fatalf("Revoked = %+v, %v; want the first record only", got, err)
	}
}
