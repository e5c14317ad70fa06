package fleet

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Store names, the values of the "store" label.
const (
	storeClickHouse = "clickhouse"
	storePostgreSQL = "postgresql"
)

// writeMetrics times the two servers' share of each group write, and counts the groups
// each server failed. Labels are the two store names only. A nil *writeMetrics records
// nothing.
type writeMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	groups   prometheus.Histogram
}

func newWriteMetrics(reg prometheus.Registerer) *writeMetrics {
	if reg == nil {
		return nil
	}
	f := promauto.With(reg)
	return &writeMetrics{
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tripwire_collector_store_write_duration_seconds",
			Help:    "Time each server of the fleet store took for one group of appends: ClickHouse's insert, and PostgreSQL's transaction (locks, index rows, heads, commit).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms … 16 s
		}, []string{"store"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tripwire_collector_store_write_errors_total",
			Help: "Groups of appends a server of the fleet store failed (their entries are not acked; agents resend them).",
		}, []string{"store"}),
		groups: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tripwire_collector_store_write_group_entries",
			Help:    "Entries written per group of appends (one ClickHouse insert, one PostgreSQL transaction).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 … 65536
		}),
	}
}

// observe records one group write: how long ClickHouse and PostgreSQL took, and which
// failed, if any.
func (m *writeMetrics) observe(entries int, ch, pg time.Duration, chErr, pgErr bool) {
	if m == nil {
		return
	}
	m.groups.Observe(float64(entries))
	if ch > 0 {
		m.duration.WithLabelValues(storeClickHouse).Observe(ch.Seconds())
	}
	m.duration.WithLabelValues(storePostgreSQL).Observe(pg.Seconds())
	if chErr {
		m.errors.WithLabelValues(storeClickHouse).Inc()
	}
	if pgErr {
		m.errors.WithLabelValues(storePostgreSQL).Inc()
	}
}
