package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tripwire-project/tripwire/collector/metrics"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/testlog"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
)

// published records what a live.Publisher was given.
type published struct {
	mu     sync.Mutex
	alerts []storage.Alert
}

func (p *published) Publish(alerts ...storage.Alert) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.alerts = append(p.alerts, alerts...)
}

func (p *published) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.alerts)
}

// TestRevokedUseRaisedOncePerWindow: every refused handshake is logged; each certificate
// raises one REVOKED_CERT alert per window, stored and published once, whatever the
// number of attempts; a new window or another certificate raises another.
func TestRevokedUseRaisedOncePerWindow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	web, err := pki.Issue(dir, "web-01", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := pki.Issue(dir, "db-01", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := duckdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	pub := &published{}
	reg := prometheus.NewRegistry()
	var logs testlog.Buffer
	r := newRevokedUse(store, pub, slog.New(slog.NewTextHandler(&logs, nil)), metrics.New(reg))
	now := time.Date(2026, 12, 7, 10, 5, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	events := func(want int) []storage.HostEvent {
		t.Helper()
		var got []storage.HostEvent
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			got, err = store.HostEvents(t.Context(), time.Time{}, time.Time{}, 100)
			if err == nil && len(got) >= want && pub.count() >= want {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // and no more than that
		got, err = store.HostEvents(t.Context(), time.Time{}, time.Time{}, 100)
		if err != nil || len(got) != want || pub.count() != want {
			t.Fatalf("%d host events stored (%v), %d published; want %d", len(got), err, pub.count(), want)
		}
		return got
	}

	for range 3 {
		r.refused(web.Certificate, "revoked at …: stolen", "192.0.2.7:40000")
	}
	got := events(1)
	ev := got[0]
	if ev.Kind != storage.HostRevokedCert || ev.Severity != "CRITICAL" || ev.HostID != web.HostID || ev.Hostname != "web-01" ||
		!strings.Contains(ev.Message, "serial "+web.Serial+")") || !strings.Contains(ev.Message, "from 192.0.2.7:40000") ||
		!strings.Contains(ev.Message, "stolen") {
		t.Errorf("event %+v", ev)
	}
	if n := strings.Count(logs.String(), "refused a revoked certificate at the handshake"); n != 3 {
		t.Errorf("%d refusals logged, want 3:\n%s", n, logs.String())
	}
	if n := testutil.ToFloat64(r.metrics.RevokedRefused.WithLabelValues(metrics.RevokedAtHandshake)); n != 3 {
		t.Errorf("%v refusals counted, want 3", n)
	}

	r.refused(db.Certificate, "revoked", "192.0.2.8:1")
	events(2)
	now = now.Add(storage.RevokedCertWindow)
	r.refused(web.Certificate, "revoked", "192.0.2.7:40001")
	events(3)
	r.refused(web.Certificate, "revoked", "192.0.2.7:40002")
	events(3)
}
