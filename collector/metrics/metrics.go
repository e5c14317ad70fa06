// Package metrics defines the collector's Prometheus metrics, named
// tripwire_collector_<what>_<unit>. Labels stay bounded: never a host id, a path or a
// PID (a fleet of thousands of hosts would make thousands of series); per-host figures
// belong in the store and the API, not in metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a batch is refused or not acked, the values of the "reason" label.
const (
	ReasonInvalid          = "invalid"           // failed decoding or hash verification: never stored
	ReasonStoreUnavailable = "store_unavailable" // the store failed: not acked, the agent resends
)

// Where a revoked certificate was refused, the values of the "at" label.
const (
	RevokedAtHandshake = "handshake" // a new connection's TLS handshake
	RevokedAtSession   = "session"   // a registration or a message on a connection already open
)

// Collector holds the collector's metrics. A nil *Collector is valid and records
// nothing, so components can be built without metrics in tests.
type Collector struct {
	Batches         prometheus.Counter
	Entries         prometheus.Counter
	Rejected        *prometheus.CounterVec
	StoreAppend     prometheus.Histogram
	AgentStreams    prometheus.Gauge
	Registrations   prometheus.Counter
	ProtocolRefused prometheus.Counter
	RevokedRefused  *prometheus.CounterVec
	Backlog         prometheus.Gauge
}

// New registers the collector's metrics with reg.
func New(reg prometheus.Registerer) *Collector {
	f := promauto.With(reg)
	return &Collector{
		Batches: f.NewCounter(prometheus.CounterOpts{
			Name: "tripwire_collector_ingest_batches_total",
			Help: "Event batches stored and acked.",
		}),
		Entries: f.NewCounter(prometheus.CounterOpts{
			Name: "tripwire_collector_ingest_entries_total",
			Help: "Chain entries received in batches that were stored and acked (resent entries included).",
		}),
		Rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tripwire_collector_ingest_rejected_batches_total",
			Help: "Batches not acked, by reason: invalid (refused) or store_unavailable (to be resent).",
		}, []string{"reason"}),
		StoreAppend: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tripwire_collector_store_append_duration_seconds",
			Help:    "Time to make one batch durable in the store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms … 16 s
		}),
		AgentStreams: f.NewGauge(prometheus.GaugeOpts{
			Name: "tripwire_collector_agent_streams",
			Help: "Agent streams currently open.",
		}),
		Registrations: f.NewCounter(prometheus.CounterOpts{
			Name: "tripwire_collector_agent_registrations_total",
			Help: "Agent sessions accepted.",
		}),
		ProtocolRefused: f.NewCounter(prometheus.CounterOpts{
			Name: "tripwire_collector_agent_protocol_refused_total",
			Help: "Agent sessions refused for an unsupported protocol version.",
		}),
		RevokedRefused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tripwire_collector_revoked_certificates_refused_total",
			Help: "Revoked host certificates refused, by where: handshake (a new connection) or session (a stream on a connection already open).",
		}, []string{"at"}),
		Backlog: f.NewGauge(prometheus.GaugeOpts{
			Name: "tripwire_collector_agent_backlog_entries",
			Help: "Chain entries that the agents of open streams hold and the collector has not acked, as their last heartbeats said: what a store outage leaves waiting on the hosts.",
		}),
	}
}

// BacklogChanged adds delta to the agents' backlog.
func (c *Collector) BacklogChanged(delta float64) {
	if c == nil || delta == 0 {
		return
	}
	c.Backlog.Add(delta)
}

// BatchStored records a stored, acked batch of n entries that took seconds to store.
func (c *Collector) BatchStored(n int, seconds float64) {
	if c == nil {
		return
	}
	c.Batches.Inc()
	c.Entries.Add(float64(n))
	c.StoreAppend.Observe(seconds)
}

// BatchRejected records a batch not acked for reason.
func (c *Collector) BatchRejected(reason string) {
	if c == nil {
		return
	}
	c.Rejected.WithLabelValues(reason).Inc()
}

// StreamOpened records an accepted session; the returned func records its end.
func (c *Collector) StreamOpened() (closed func()) {
	if c == nil {
		return func() {}
	}
	c.Registrations.Inc()
	c.AgentStreams.Inc()
	return c.AgentStreams.Dec
}

// Refused records a session refused for its protocol version.
func (c *Collector) Refused() {
	if c == nil {
		return
	}
	c.ProtocolRefused.Inc()
}

// RefusedRevoked records a revoked certificate refused at (RevokedAtHandshake or
// RevokedAtSession).
func (c *Collector) RefusedRevoked(at string) {
	if c == nil {
		return
	}
	c.RevokedRefused.WithLabelValues(at).Inc()
}
