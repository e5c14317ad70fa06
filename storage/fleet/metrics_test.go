package fleet

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tripwire-project/tripwire/internal/testservers"
)

// TestWriteMetrics: each group write is timed per server, and a server that fails it
// is counted as that server's error, not the other's.
func TestWriteMetrics(t *testing.T) {
	ch := testservers.ClickHouse(t)
	reg := prometheus.NewRegistry()
	s, err := Open(t.Context(), Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database,
		PostgresDSN: testservers.PostgreSQL(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	es := chainOf(10)
	if err := s.AppendEntries(t.Context(), "h", es[:4]); err != nil {
		t.Fatal(err)
	}
	for _, store := range []string{storeClickHouse, storePostgreSQL} {
		if n := histogramCount(t, reg, "tripwire_collector_store_write_duration_seconds", store); n != 1 {
			t.Errorf("%s write durations observed: %d, want 1", store, n)
		}
	}
	chExec(t, s, "RENAME TABLE entries TO entries_away")
	if err := s.AppendEntries(t.Context(), "h", es[4:]); err == nil {
		t.Fatal("AppendEntries returned nil with ClickHouse's table gone")
	}
	chExec(t, s, "RENAME TABLE entries_away TO entries")
	if n := testutil.ToFloat64(s.metrics.errors.WithLabelValues(storeClickHouse)); n != 1 {
		t.Errorf("ClickHouse write errors = %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.metrics.errors.WithLabelValues(storePostgreSQL)); n != 0 {
		t.Errorf("PostgreSQL write errors = %v, want 0 (ClickHouse failed the group)", n)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name, store string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue(m, "store") == store {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
