package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

const sampleMetrics = `# HELP tripwire_agent_events_lost_total Events a watcher lost.
# TYPE tripwire_agent_events_lost_total counter
tripwire_agent_events_lost_total{mode="fanotify",watcher="file"} 3
tripwire_agent_events_lost_total{mode="ebpf",watcher="process"} 4
tripwire_agent_events_lost_total_extra 100
tripwire_agent_events_total{type="FILE"} 150000
tripwire_agent_events_total{type="PROCESS"} 1.5e+06
`

func TestMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, sampleMetrics)
	}))
	defer srv.Close()
	a := &agentProc{healthz: srv.Listener.Addr().String()}
	for prefix, want := range map[string]float64{
		"tripwire_agent_events_lost_total":            7,
		`tripwire_agent_events_total{type="FILE"}`:    150000,
		`tripwire_agent_events_total{type="PROCESS"}`: 1.5e6,
		"tripwire_agent_events_total":                 1.65e6,
		"tripwire_agent_events_suppressed_total":      0,
	} {
		got, err := a.metric(prefix)
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		if got != want {
			t.Errorf("%s = %v, want %v", prefix, got, want)
		}
	}
}
