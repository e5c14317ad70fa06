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

// CertExpiryEvent is the WARN raised once per certificate that expires within
// CertExpiryWarning; its id derives from the host and serial.
// A fork (Host.ForkOf) raises none: it is evidence kept beside its host, not a host to
// keep running.
func CertExpiryEvent(h Host, now time.Time) (HostEvent, bool) {
	if h.ForkOf != "" || h.CertNotAfter == nil || h.CertSerial == "" || h.CertNotAfter.Sub(now) > CertExpiryWarning {
		return HostEvent{}, false
	}
	ev := NewHostEvent(h.HostID, h.Hostname, HostCertExpiry, now, now)
	ev.EventID = uuid.NewSHA1(hostEventNamespace, []byte(h.HostID+"/"+h.CertSerial+"/cert-expiry")).String()
	left := h.CertNotAfter.Sub(now).Round(time.Hour)
	ev.Message = fmt.Sprintf("the certificate of host %s (serial %s) expires at %s, in %s: issue a new one (tripwire-collector pki issue) and reload the agent (SIGHUP)",
		h.Hostname, h.CertSerial, h.CertNotAfter.UTC().Format(time.RFC3339), left)
	return ev, true
}
