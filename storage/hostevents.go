package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// NewHostEvent builds the event of a host changing status at t; lastSeen is when it
// was last heard from, which an OFFLINE event names.
func NewHostEvent(hostID, hostname, kind string, t time.Time, lastSeen time.Time) HostEvent {
	// Host times are the collector's, kept to the microsecond by every store: an event
	// on the live stream and the same event read back then carry the same time.
	ev := HostEvent{EventID: uuid.NewString(), HostID: hostID, Hostname: hostname, Time: t.UTC().Truncate(time.Microsecond), Kind: kind}
	switch kind {
	case HostIntegrity, HostRevokedCert:
		ev.Severity = "CRITICAL"
	case HostCertExpiry, HostDegraded:
		ev.Severity = "WARN"
	case HostOffline:
		ev.Severity = "CRITICAL"
		ev.Message = fmt.Sprintf("host %s went silent: no heartbeat since %s", hostname, lastSeen.UTC().Format(time.RFC3339))
	case HostRestored:
		ev.Severity = "INFO"
		ev.Message = fmt.Sprintf("every watcher of host %s runs in its best mode again", hostname)
	default:
		ev.Severity = "INFO"
		ev.Message = fmt.Sprintf("host %s is back after being offline", hostname)
	}
	return ev
}

// HealthEvent builds the event of a host's watchers changing health: DEGRADED, naming
// what degraded says is missing, or RESTORED when degraded is "".
func HealthEvent(hostID, hostname, degraded string, t time.Time) HostEvent {
	if degraded == "" {
		return NewHostEvent(hostID, hostname, HostRestored, t, t)
	}
	ev := NewHostEvent(hostID, hostname, HostDegraded, t, t)
	ev.Message = fmt.Sprintf("host %s runs degraded: %s (tripwire doctor on the host names the capability or kernel feature that would restore it)", hostname, degraded)
	return ev
}

// HostStatus is the status a host shows: OFFLINE when the dead-man switch marked it so
// (liveness, the stored status), else DEGRADED while a watcher is degraded, else ONLINE.
func HostStatus(stored, degraded string) string {
	switch {
	case stored == HostOffline:
		return HostOffline
	case degraded != "":
		return HostDegraded
	}
	return HostOnline
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

// Rule is the rule name a host event's alert carries: "dead-man" (OFFLINE, ONLINE),
// "chain-integrity", "certificate-expiry", "watcher-health" (DEGRADED, RESTORED) or
// "certificate-revocation" (REVOKED_CERT).
func (e HostEvent) Rule() string {
	switch e.Kind {
	case HostIntegrity:
		return "chain-integrity"
	case HostCertExpiry:
		return "certificate-expiry"
	case HostDegraded, HostRestored:
		return "watcher-health"
	case HostRevokedCert:
		return "certificate-revocation"
	}
	return "dead-man"
}

// Detail is a host event alert's event_detail: {"kind": …, "message": …}. Stores keep
// these exact bytes, so the alert reads the same from the live stream and from the store.
// Text is not HTML-escaped, so that a search for "<seq 7>" finds it.
func (e HostEvent) Detail() RawJSON {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	}{e.Kind, e.Message}) // two strings always encode
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// Alert is the event as an alert: tripwire type TypeHost, rule Rule, seq 0, the event as
// its detail, and the event's id as the alert's.
func (e HostEvent) Alert() Alert {
	return Alert{
		AlertID: e.EventID, Host: e.Hostname, HostID: e.HostID, Timestamp: e.Time,
		TripwireType: TypeHost, RuleName: e.Rule(), Severity: e.Severity,
		EventDetail: e.Detail(), TriageStatus: TriageOpen,
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
// nearness alone. A fork (Host.ForkOf) raises none: it is evidence kept beside its
// host, not a host to keep running.
func CertExpiryEvent(h Host, now time.Time) (HostEvent, bool) {
	if h.ForkOf != "" || h.CertNotAfter == nil || h.CertSerial == "" {
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

// RevokedCertWindow is how often a revoked certificate in use raises a REVOKED_CERT
// event at most: once per certificate per window (by its id), however many times it is
// presented and on however many collector replicas; every refusal is logged.
const RevokedCertWindow = time.Hour

// RevokedCertEvent is the CRITICAL raised when a revoked certificate of the host (serial
// in lowercase hex) is presented from the address from and refused for reason. Its id
// derives from the host, the serial and the RevokedCertWindow now falls in.
func RevokedCertEvent(hostID, hostname, serial, reason, from string, now time.Time) HostEvent {
	ev := NewHostEvent(hostID, hostname, HostRevokedCert, now, now)
	window := now.UTC().Truncate(RevokedCertWindow)
	ev.EventID = uuid.NewSHA1(hostEventNamespace, []byte(hostID+"/"+serial+"/revoked-cert/"+window.Format(time.RFC3339))).String()
	if from == "" {
		from = "an unknown address"
	}
	ev.Message = fmt.Sprintf("a revoked certificate of host %s (serial %s) was presented from %s and refused (%s). "+
		"From the host's own agent this is expected until it has a certificate with a new key (tripwire-collector pki issue, then SIGHUP); "+
		"from anywhere else, whoever holds the revoked key is trying to report as the host. Later attempts until %s are logged, not raised",
		hostname, serial, from, reason, window.Add(RevokedCertWindow).Format(time.RFC3339))
	return ev
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
