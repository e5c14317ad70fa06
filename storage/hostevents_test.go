package storage

import (
	"strings"
	"testing"
	"time"
)

// The expiry warning fits short-lived certificates: it needs both nearness (30 days) and
// an overdue renewal (less than a quarter of the lifetime left; agents renew at a third).
func TestCertExpiryEvent(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name string
		// notBefore and notAfter relative to now; noBefore leaves CertNotBefore unset.
		notBefore, notAfter time.Duration
		noBefore            bool
		noSerial            bool
		want                bool
		wantMsg             string
	}{
		{name: "24 h certificate, fresh", notBefore: -time.Hour, notAfter: 23 * time.Hour},
		{name: "24 h certificate, renewal due but not overdue", notBefore: -17 * time.Hour, notAfter: 7 * time.Hour},
		{name: "24 h certificate, a quarter left exactly", notBefore: -18 * time.Hour, notAfter: 6 * time.Hour},
		{name: "24 h certificate, renewal overdue", notBefore: -19 * time.Hour, notAfter: 5 * time.Hour, want: true, wantMsg: "expires at 2026-05-01T17:00:00Z, in 5h0m0s, and renewal is overdue"},
		{name: "24 h certificate, expired", notBefore: -25 * time.Hour, notAfter: -time.Hour, want: true, wantMsg: "expired at 2026-05-01T11:00:00Z"},
		{name: "1 year certificate, 40 days left", notBefore: -325 * day, notAfter: 40 * day},
		{name: "1 year certificate, 20 days left", notBefore: -345 * day, notAfter: 20 * day, want: true, wantMsg: "in 480h0m0s"},
		{name: "10 day certificate, fresh (within 30 days, not overdue)", notBefore: -time.Minute, notAfter: 10 * day},
		{name: "2 minute certificate, 20 s left", notBefore: -100 * time.Second, notAfter: 20 * time.Second, want: true, wantMsg: "in 20s"},
		{name: "2 year certificate, 100 days left (overdue, but not within 30 days)", notBefore: -630 * day, notAfter: 100 * day},
		{name: "no NotBefore recorded, 20 days left", noBefore: true, notAfter: 20 * day, want: true},
		{name: "no NotBefore recorded, 40 days left", noBefore: true, notAfter: 40 * day},
		{name: "no serial recorded", notBefore: -19 * time.Hour, notAfter: 5 * time.Hour, noSerial: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			na := now.Add(tt.notAfter)
			h := Host{HostID: "4f1d", Hostname: "web-01", CertSerial: "0a1b", CertNotAfter: &na}
			if !tt.noBefore {
				nb := now.Add(tt.notBefore)
				h.CertNotBefore = &nb
			}
			if tt.noSerial {
				h.CertSerial = ""
			}
			ev, due := CertExpiryEvent(h, now)
			if due != tt.want {
				t.Fatalf("due = %v, want %v (event %+v)", due, tt.want, ev)
			}
			if !due {
				return
			}
			if ev.Kind != HostCertExpiry || ev.Severity != "WARN" || ev.HostID != "4f1d" || ev.Hostname != "web-01" || !strings.Contains(ev.Message, "serial 0a1b") || !strings.Contains(ev.Message, tt.wantMsg) {
				t.Errorf("event = %+v, want a WARN CERT_EXPIRY naming the serial and %q", ev, tt.wantMsg)
			}
			// Once per certificate: the id derives from host and serial, not the time.
			again, _ := CertExpiryEvent(h, now.Add(time.Second))
			if again.EventID != ev.EventID {
				t.Errorf("event id changed with time: %s, %s", ev.EventID, again.EventID)
			}
			h.CertSerial = "0a1c"
			if other, _ := CertExpiryEvent(h, now); other.EventID == ev.EventID {
				t.Error("two certificates share an event id")
			}
		})
	}
}

func TestJoinTokenState(t *testing.T) {
	now := time.Now()
	used := now.Add(-time.Minute)
	for _, tt := range []struct {
		tok  JoinToken
		want string
	}{
		{JoinToken{ExpiresAt: now.Add(time.Hour)}, TokenUnused},
		{JoinToken{ExpiresAt: now}, TokenExpired},
		{JoinToken{ExpiresAt: now.Add(-time.Hour), UsedAt: &used}, TokenUsed},
	} {
		if got := tt.tok.State(now); got != tt.want {
			t.Errorf("State(%+v) = %s, want %s", tt.tok, got, tt.want)
		}
	}
}
