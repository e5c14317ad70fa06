// Package healthz serves the agent's /healthz on a loopback address: whether it is
// running, how far behind its shipping is, when it last raised an alert, how each
// watcher runs, and when its certificate expires and is renewed. It is unauthenticated, so it says nothing an attacker on the host could
// not learn anyway, and the config refuses non-loopback addresses.
package healthz

import (
	"encoding/json"
	"net/http"
	"time"
)

// Report is the /healthz body.
type Report struct {
	Status      string     `json:"status"` // ok, degraded
	Version     string     `json:"version"`
	Host        string     `json:"host"`
	UptimeS     int64      `json:"uptime_s"`
	QueueDepth  uint64     `json:"queue_depth"` // chain entries not yet acked by the collector
	HeadSeq     uint64     `json:"head_seq"`
	AckedSeq    uint64     `json:"acked_seq"`
	LastAlertAt *time.Time `json:"last_alert_at"`
	AuditBytes  int64      `json:"audit_bytes"`
	// AuditError says why the chain cannot be written right now (events are held and
	// retried); empty when it can.
	AuditError string          `json:"audit_error,omitempty"`
	Watchers   []WatcherReport `json:"watchers"`
	// Suppressed counts, per rule, the hits its allowlist kept out of the chain.
	Suppressed map[string]uint64 `json:"suppressed,omitempty"`
	// CentralRules is the version of the central rule set in force ("" when none).
	CentralRules string `json:"central_rules_version,omitempty"`
	Collector    any    `json:"collector"`
	// Certificate is the client certificate in use and its renewal.
	Certificate *CertificateReport `json:"certificate,omitempty"`
}

// CertificateReport describes the agent's client certificate: when it expires, when the
// agent renews it over its stream, and how the last renewal went.
type CertificateReport struct {
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// RenewAfter is when two thirds of the lifetime have passed: from then the agent asks
	// the collector for a new certificate, on every heartbeat until it gets one.
	RenewAfter time.Time `json:"renew_after"`
	// LastRenewedAt is when this process last renewed it (absent: never).
	LastRenewedAt *time.Time `json:"last_renewed_at,omitempty"`
	// RenewalError says why the last renewal failed; empty after a success.
	RenewalError string `json:"renewal_error,omitempty"`
	// RenewalOverdue is true once less than a quarter of the lifetime is left (the status
	// is then degraded, and the collector raises a CERT_EXPIRY warning).
	RenewalOverdue bool `json:"renewal_overdue"`
}

// WatcherReport says how one watcher runs.
type WatcherReport struct {
	Name     string `json:"name"`
	Mode     string `json:"mode"`
	Degraded string `json:"degraded,omitempty"`
}

// Handler serves the report built by report on every request.
func Handler(report func() Report) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		rep := report()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
	return mux
}
