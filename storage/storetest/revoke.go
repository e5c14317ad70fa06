package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// testCertsAndRevocation: a host's registration records its certificate and key, a
// revocation is listed once, and revoking again keeps the first record, but adds a key
// the first was made without.
func testCertsAndRevocation(t *testing.T, s storage.Store) {
	notAfter := seen(24 * time.Hour) // TIMESTAMPTZ keeps microseconds
	key1, key2 := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	mustRegister(t, s, storage.Host{HostID: "h-cert", Hostname: "certhost", Watchers: "[]", LastSeen: t0, CertSerial: "0a1b", CertKey: key1, CertNotAfter: &notAfter})
	hosts, err := s.Hosts(t.Context())
	if err != nil || len(hosts) != 1 || hosts[0].CertSerial != "0a1b" || hosts[0].CertKey != key1 || hosts[0].CertNotAfter == nil || !hosts[0].CertNotAfter.Equal(notAfter) {
		t.Fatalf("Hosts = %+v, %v; want cert 0a1b expiring %v", hosts, err, notAfter)
	}
	if got, err := s.Revoked(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("Revoked on a new store = %+v, %v", got, err)
	}
	first := storage.RevokedCert{Serial: "0a1b", HostID: "h-cert", Hostname: "certhost", RevokedAt: seen(time.Hour), Reason: "laptop stolen"}
	again := storage.RevokedCert{Serial: "0a1b", HostID: "h-cert", Hostname: "certhost", RevokedAt: t0.Add(2 * time.Hour), Reason: "again"}
	for _, c := range []storage.RevokedCert{first, again} {
		if err := s.Revoke(t.Context(), c); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	got, err := s.Revoked(t.Context())
	if err != nil || len(got) != 1 || got[0].Reason != first.Reason || !got[0].RevokedAt.Equal(first.RevokedAt) || got[0].Hostname != "certhost" || got[0].KeySHA256 != "" {
		t.Fatalf("Revoked = %+v, %v; want the first record only", got, err)
	}
	// Revoking the serial again with its key adds the key, and only the first key.
	for _, key := range []string{key1, key2} {
		again.KeySHA256 = key
		if err := s.Revoke(t.Context(), again); err != nil {
			t.Fatalf("Revoke with key %s: %v", key, err)
		}
	}
	got, err = s.Revoked(t.Context())
	if err != nil || len(got) != 1 || got[0].KeySHA256 != key1 || got[0].Reason != first.Reason {
		t.Fatalf("Revoked = %+v, %v; want the first record with key %s", got, err, key1)
	}
	withKey := storage.RevokedCert{Serial: "ff01", KeySHA256: key2, HostID: "h-cert", Hostname: "certhost", RevokedAt: t0, Reason: "key"}
	if err := s.Revoke(t.Context(), withKey); err != nil {
		t.Fatal(err)
	}
	got, err = s.Revoked(t.Context())
	if err != nil || len(got) != 2 || got[1].Serial != "ff01" || got[1].KeySHA256 != key2 {
		t.Fatalf("Revoked = %+v, %v; want 0a1b then ff01 with key %s", got, err, key2)
	}
}
