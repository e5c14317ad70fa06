package storage

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// NewHostEvent builds the event of a host changing status at t.
func NewHostEvent(hostID, hostname, kind string, t time.Time, lastSeen time.Time) HostEvent {
	ev := HostEvent{EventID: uuid.NewString(), HostID: hostID, Hostname: hostname, Time: t.UTC(), Kind: kind}
	switch kind {
	case HostIntegrity:
		ev.Severity = "CRITICAL"
	case HostCertExpiry:
		ev.Severity = "WARN"
	case HostOffline:
		ev.Severity = "CRITICAL"
		ev.Message = fmt.Sprintf("host %s went silent: no heartbeat since %s", hostname, lastSeen.UTC().Format(time.RFC3339))
	default:
		ev.Severity = "INFO"
		ev.Message = fmt.Sprintf("host %s is back after being offline", hostname)
	}
	return ev
}

// HostEventLimit applies the default and cap of HostEvents' limit.
func HostEventLimit(limit int) int {
	switch {
	case limit <= 0:
		return 100
	case limit > 1000:
		return 1000
	}
	return limit
}

// TypeHost is the tripwire type of the alerts the collector raises about hosts.
const TypeHost = "HOST"

// Alert is the event as the live stream carries it: tripwire type HOST, rule
// "dead-man", "chain-integrity" or "certificate-expiry", the event as its detail.
func (e HostEvent) Alert() Alert {
	rule := map[string]string{HostIntegrity: "chain-integrity", HostCertExpiry: "certificate-expiry"}[e.Kind]
	if rule == "" {
		rule = "dead-man"
	}
	detail, _ := json.Marshal(map[string]string{"kind": e.Kind, "message": e.Message})
	return Alert{
		AlertID: e.EventID, Host: e.Hostname, HostID: e.HostID, Timestamp: e.Time,
		TripwireType: TypeHost, RuleName: rule, Severity: e.Severity,
		EventDetail: detail, TriageStatus: "open",
	}
}

// hostEventNamespace scopes the ids of events that must be raised once.
var hostEventNamespace = uuid.MustParse("0d5f3b8e-2a71-4c55-9a0e-6b7c3d9e1f42")

// CertOverdueFraction is the part of a certificate's lifetime left below which its
// renewal is overdue: agents renew once two thirds of the lifetime have passed (a third
// left), so a certificate with less than a quarter left missed its renewal.
const CertOverdueFraction = 4

// CertExpiryEvent is the WARN raised once per certificate that expires within
// CertExpiryWarning and whose renewal is overdue (less than 1/CertOverdueFraction of its
// lifetime left); its id derives from the host and serial. Short-lived certificates are
// always within 30 days of expiry, so nearness alone would warn for every host all the
// time; a certificate of a host registered before NotBefore was recorded is judged on
// nearness alone.
func CertExpiryEvent(h Host, now time.Time) (HostEvent, bool) {
	if h.CertNotAfter == nil || h.CertSerial == "" {
		return HostEvent{}, false
	}
	left := h.CertNotAfter.Sub(now)
	if left > CertExpiryWarning {
		return HostEvent{}, false
	}
	if h.CertNotBefore != nil {
		if life := h.CertNotAfter.Sub(*h.CertNotBefore); life > 0 && left >= life/CertOverdueFraction {
			return HostEvent{}, false
		}
	}
	ev := NewHostEvent(h.HostID, h.Hostname, HostCertExpiry, now, now)
	ev.EventID = uuid.NewSHA1(hostEventNamespace, []byte(h.HostID+"/"+h.CertSerial+"/cert-expiry")).String()
	when := "expires at %s, in " + roughly(left)
	if left <= 0 {
		when = "expired at %s"
	}
	ev.Message = fmt.Sprintf("the certificate of host %s (serial %s) "+when+", and renewal is overdue: agents renew their certificate over the stream "+
		"once two thirds of its lifetime have passed. Check the agent's log and /healthz (certificate.renewal_error) and its link to the collector, "+
		"or enrol it again (tripwire-collector pki token) or issue a new certificate (tripwire-collector pki issue) and reload the agent (SIGHUP)",
		h.Hostname, h.CertSerial, h.CertNotAfter.UTC().Format(time.RFC3339))
	return ev, true
}

// roughly rounds a duration for a message: to the hour past a day, the minute past an
// hour, the second below.
func roughly(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return d.Round(time.Hour).String()
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
