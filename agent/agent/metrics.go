package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tripwire-project/tripwire/agent/sigwatch"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// agentMetrics are the agent's Prometheus metrics, served on the /healthz listener at
// /metrics (loopback only). Counters read from the watchers are collected on scrape.
type agentMetrics struct {
	reg     *prometheus.Registry
	events  *prometheus.CounterVec // by watcher type, before allowlists
	signals *prometheus.CounterVec
}

func newAgentMetrics(a *Agent) *agentMetrics {
	m := &agentMetrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tripwire_agent_events_total", Help: "Tripwire hits seen by the watchers, before allowlists.",
		}, []string{"type"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tripwire_agent_signals_received_total", Help: "Signals sent to the agent, by signal.",
		}, []string{"signal"}),
	}
	lost := prometheus.NewDesc("tripwire_agent_events_lost_total",
		"Events a watcher lost (kernel queue or ring buffer overflow, full buffer); each loss is also a gap entry in the chain.", []string{"watcher", "mode"}, nil)
	suppressed := prometheus.NewDesc("tripwire_agent_events_suppressed_total",
		"Hits dropped by a rule's allowlist.", []string{"rule"}, nil)
	queue := prometheus.NewDesc("tripwire_agent_queue_depth", "Chain entries not yet acked by the collector.", nil, nil)
	m.reg.MustRegister(m.events, m.signals, collectorFunc{descs: []*prometheus.Desc{lost, suppressed, queue}, collect: func(ch chan<- prometheus.Metric) {
		byMode := map[[2]string]uint64{} // a watcher replaced by a rule change keeps counting
		for _, w := range a.tracked() {
			byMode[[2]string{w.name, w.Mode()}] += w.Lost()
		}
		for k, n := range byMode {
			ch <- prometheus.MustNewConstMetric(lost, prometheus.CounterValue, float64(n), k[0], k[1])
		}
		if a.signals != nil {
			ch <- prometheus.MustNewConstMetric(lost, prometheus.CounterValue, float64(a.signals.Lost()), "signals", "ebpf")
		}
		for rule, n := range a.filter.Load().suppressedByRule() {
			ch <- prometheus.MustNewConstMetric(suppressed, prometheus.CounterValue, float64(n), rule)
		}
		head, _ := a.chain.Head()
		ch <- prometheus.MustNewConstMetric(queue, prometheus.GaugeValue, float64(head-min(a.chain.Acked(), head)))
	}})
	return m
}

func (m *agentMetrics) seen(ev chain.Event) {
	m.events.WithLabelValues(ev.Type).Add(float64(max(ev.Count, 1)))
}

func (m *agentMetrics) signal(s sigwatch.Signal) { m.signals.WithLabelValues(s.Name).Inc() }

func (m *agentMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// collectorFunc is a prometheus.Collector whose metrics are computed on scrape.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
