package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// enrolCases are the suite's cases for join tokens and the certificate dates of hosts;
// Run runs them with the others.
var enrolCases = []struct {
	name string
	fn   func(t *testing.T, s storage.Store)
}{
	{"Tokens/RedeemOnce", testTokenRedeemOnce},
	{"Tokens/Refusals", testTokenRefusals},
	{"Tokens/ConcurrentRedeem", testTokenConcurrentRedeem},
	{"Hosts/CertNotBefore", testCertNotBefore},
}

// token returns an unused token for host, made at t0 and expiring at t0 + ttl.
func token(id, host string, ttl time.Duration) storage.JoinToken {
	return storage.JoinToken{
		ID: id, SecretSHA256: secretHash(id), Hostname: host, HostID: "host-id-" + id,
		CreatedAt: seen(0), CreatedBy: "token", ExpiresAt: seen(ttl),
	}
}

// secretHash is a stand-in for the SHA-256 of a token's secret: stores compare it as
// text.
func secretHash(id string) string { return fmt.Sprintf("%064x", id) }

func mustAddToken(t *testing.T, s storage.Store, tok storage.JoinToken) {
	t.Helper()
	if err := s.AddJoinToken(t.Context(), tok); err != nil {
		t.Fatalf("AddJoinToken(%s): %v", tok.ID, err)
	}
}

// testTokenRedeemOnce: a token is listed once made, redeemed by its secret, recorded as
// spent (when, from where), refused the second time, and still listed.
func testTokenRedeemOnce(t *testing.T, s storage.Store) {
	if got, err := s.JoinTokens(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("JoinTokens on a new store = %+v, %v", got, err)
	}
	tok := token("00000000000000a1", "web-01", time.Hour)
	mustAddToken(t, s, tok)
	older := token("00000000000000a0", "web-00", time.Hour)
	older.CreatedAt = seen(-time.Minute)
	mustAddToken(t, s, older)
	if err := s.AddJoinToken(t.Context(), tok); err == nil {
		t.Error("AddJoinToken accepted an id already held")
	}
	list, err := s.JoinTokens(t.Context())
	if err != nil || len(list) != 2 || list[0].ID != tok.ID || list[1].ID != older.ID {
		t.Fatalf("JoinTokens = %+v, %v; want the two tokens, newest first", list, err)
	}
	got := list[0]
	if got.Hostname != "web-01" || got.HostID != tok.HostID || got.SecretSHA256 != tok.SecretSHA256 || got.CreatedBy != "token" || got.UsedAt != nil || got.UsedFrom != "" {
		t.Errorf("listed %+v, want %+v", got, tok)
	}
	wantTime(t, "created_at", got.CreatedAt, tok.CreatedAt)
	wantTime(t, "expires_at", got.ExpiresAt, tok.ExpiresAt)

	at := seen(10 * time.Minute)
	red, err := s.RedeemJoinToken(t.Context(), tok.ID, tok.SecretSHA256, at, "192.0.2.7:51234")
	if err != nil {
		t.Fatalf("RedeemJoinToken: %v", err)
	}
	if red.ID != tok.ID || red.Hostname != "web-01" || red.HostID != tok.HostID || red.UsedAt == nil || red.UsedFrom != "192.0.2.7:51234" {
		t.Fatalf("redeemed %+v, want the token, spent from 192.0.2.7:51234", red)
	}
	wantTime(t, "used_at", *red.UsedAt, at)
	if red.State(at) != storage.TokenUsed {
		t.Errorf("state after redeem = %s", red.State(at))
	}

	_, err = s.RedeemJoinToken(t.Context(), tok.ID, tok.SecretSHA256, seen(11*time.Minute), "192.0.2.8:4000")
	if !errors.Is(err, storage.ErrTokenSpent) {
		t.Fatalf("second redeem: %v, want ErrTokenSpent", err)
	}
	list, err = s.JoinTokens(t.Context())
	if err != nil || len(list) != 2 || list[0].UsedAt == nil || !list[0].UsedAt.Equal(at) || list[0].UsedFrom != "192.0.2.7:51234" {
		t.Fatalf("JoinTokens after two redeems = %+v, %v; want the first redeem recorded, not the second", list, err)
	}
	if list[1].UsedAt != nil {
		t.Errorf("redeeming one token spent another: %+v", list[1])
	}
}

// testTokenRefusals: an unknown id, a wrong secret and an expired token are each refused
// with their own error, and leave the token as it was (a wrong secret does not burn it).
func testTokenRefusals(t *testing.T, s storage.Store) {
	tok := token("00000000000000b1", "db-01", time.Hour)
	mustAddToken(t, s, tok)
	expired := token("00000000000000b2", "db-02", time.Second)
	mustAddToken(t, s, expired)

	tests := []struct {
		name, id, secret string
		at               time.Time
		want             error
	}{
		{"unknown id", "00000000000000ff", tok.SecretSHA256, seen(time.Minute), storage.ErrTokenUnknown},
		{"wrong secret", tok.ID, secretHash("guess"), seen(time.Minute), storage.ErrTokenSecret},
		{"expired", expired.ID, expired.SecretSHA256, seen(2 * time.Second), storage.ErrTokenExpired},
		{"at the instant of expiry", expired.ID, expired.SecretSHA256, seen(time.Second), storage.ErrTokenExpired},
		{"expired, wrong secret", expired.ID, secretHash("guess"), seen(2 * time.Second), storage.ErrTokenSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.RedeemJoinToken(t.Context(), tt.id, tt.secret, tt.at, "198.51.100.1:1")
			if !errors.Is(err, tt.want) {
				t.Fatalf("RedeemJoinToken = %v, want %v", err, tt.want)
			}
		})
	}
	list, err := s.JoinTokens(t.Context())
	if err != nil || len(list) != 2 {
		t.Fatalf("JoinTokens = %+v, %v", list, err)
	}
	for _, l := range list {
		if l.UsedAt != nil || l.UsedFrom != "" {
			t.Errorf("a refused redeem changed token %s: %+v", l.ID, l)
		}
	}
	if got := list[1].State(seen(2 * time.Second)); list[1].ID != expired.ID || got != storage.TokenExpired {
		t.Errorf("expired token %s is %s", list[1].ID, got)
	}
	// The wrong secret left the token usable.
	if _, err := s.RedeemJoinToken(t.Context(), tok.ID, tok.SecretSHA256, seen(2*time.Minute), "198.51.100.2:2"); err != nil {
		t.Fatalf("redeeming after a wrong secret: %v", err)
	}
}

// testTokenConcurrentRedeem: of many redeems of one token at once, exactly one wins;
// the others find it spent.
func testTokenConcurrentRedeem(t *testing.T, s storage.Store) {
	tok := token("00000000000000c1", "race-01", time.Hour)
	mustAddToken(t, s, tok)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.RedeemJoinToken(t.Context(), tok.ID, tok.SecretSHA256, seen(time.Minute), fmt.Sprintf("203.0.113.%d:443", i))
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, storage.ErrTokenSpent):
			t.Errorf("redeem %d: %v, want success or ErrTokenSpent", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent redeems succeeded, want exactly 1", won)
	}
}

// testCertNotBefore: registration records the certificate's NotBefore beside its
// NotAfter, and a later registration replaces both.
func testCertNotBefore(t *testing.T, s storage.Store) {
	nb, na := seen(-time.Hour), seen(23*time.Hour)
	mustRegister(t, s, storage.Host{HostID: "h-nb", Hostname: "nbhost", Watchers: "[]", LastSeen: t0, CertSerial: "01", CertNotBefore: &nb, CertNotAfter: &na})
	hosts, err := s.Hosts(t.Context())
	if err != nil || len(hosts) != 1 || hosts[0].CertNotBefore == nil || hosts[0].CertNotAfter == nil {
		t.Fatalf("Hosts = %+v, %v; want the certificate's dates", hosts, err)
	}
	wantTime(t, "cert_not_before", *hosts[0].CertNotBefore, nb)
	nb2, na2 := seen(22*time.Hour), seen(46*time.Hour)
	mustRegister(t, s, storage.Host{HostID: "h-nb", Hostname: "nbhost", Watchers: "[]", LastSeen: seen(22 * time.Hour), CertSerial: "02", CertNotBefore: &nb2, CertNotAfter: &na2})
	hosts, err = s.Hosts(t.Context())
	if err != nil || len(hosts) != 1 || hosts[0].CertSerial != "02" || hosts[0].CertNotBefore == nil {
		t.Fatalf("Hosts after a renewal = %+v, %v", hosts, err)
	}
	wantTime(t, "cert_not_before after renewal", *hosts[0].CertNotBefore, nb2)
	wantTime(t, "cert_not_after after renewal", *hosts[0].CertNotAfter, na2)
	// A registration without a certificate (certificates not checked) clears them.
	mustRegister(t, s, storage.Host{HostID: "h-nb", Hostname: "nbhost", Watchers: "[]", LastSeen: seen(23 * time.Hour)})
	if hosts, err = s.Hosts(t.Context()); err != nil || hosts[0].CertNotBefore != nil {
		t.Fatalf("Hosts after a registration without certificate = %+v, %v", hosts, err)
	}
}
