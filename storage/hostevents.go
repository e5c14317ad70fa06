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
// "dead-man" (or "chain-integrity"), the event as its detail.
func (e HostEvent) Alert() Alert {
	rule := "dead-man"
	if e.Kind == HostIntegrity {
		rule = "chain-integrity"
	}
	detail, _ := json.Marshal(map[string]string{"kind": e.Kind, "message": e.Message})
	return Alert{
		AlertID: e.EventID, Host: e.Hostname, HostID: e.HostID, Timestamp: e.Time,
		TripwireType: TypeHost, RuleName: rule, Severity: e.Severity,
		EventDetail: detail, TriageStatus: "open",
	}
}
