package server

import (
	"context"
	"crypto/x509"
	"log/slog"
	"sync"
	"time"

	"github.com/tripwire-project/tripwire/collector/live"
	"github.com/tripwire-project/tripwire/collector/metrics"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/storage"
)

// revokedUse reports the handshakes refused because the certificate is revoked: each is
// logged, and each certificate raises a REVOKED_CERT host event at most once per
// storage.RevokedCertWindow (the event's id is the same within a window, so replicas
// raise it once between them). The handshake only queues the event: run records it.
type revokedUse struct {
	store   storage.Store
	pub     live.Publisher
	logger  *slog.Logger
	metrics *metrics.Collector
	now     func() time.Time
	queue   chan storage.HostEvent

	mu     sync.Mutex
	raised map[string]time.Time // event id → when queued here
}

func newRevokedUse(store storage.Store, pub live.Publisher, logger *slog.Logger, m *metrics.Collector) *revokedUse {
	return &revokedUse{store: store, pub: pub, logger: logger, metrics: m, now: time.Now,
		queue: make(chan storage.HostEvent, 64), raised: map[string]time.Time{}}
}

// refused is the ServerTLS hook: it runs inside the handshake and never blocks.
func (r *revokedUse) refused(leaf *x509.Certificate, reason, from string) {
	hostID, hostname, _ := pki.HostIdentity(leaf) // verified before the revocation check
	serial := pki.SerialHex(leaf)
	r.metrics.RefusedRevoked(metrics.RevokedAtHandshake)
	r.logger.Warn("refused a revoked certificate at the handshake", "host", hostname, "host_id", hostID,
		"serial", serial, "from", from, "reason", reason)
	now := r.now()
	ev := storage.RevokedCertEvent(hostID, hostname, serial, reason, from, now)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, done := r.raised[ev.EventID]; done {
		return
	}
	for id, at := range r.raised {
		if now.Sub(at) > storage.RevokedCertWindow {
			delete(r.raised, id)
		}
	}
	select {
	case r.queue <- ev:
		r.raised[ev.EventID] = now
	default:
		// A flood of refusals from many certificates: the log has each.
	}
}

// run records queued events until ctx ends, and publishes each the first time it is
// stored. An event the store refuses is forgotten here, so a later refusal raises it.
func (r *revokedUse) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			added, err := r.store.AddHostEvent(ctx, ev)
			if err != nil {
				r.logger.Warn("recording a revoked certificate's use", "host", ev.Hostname, "err", err)
				r.mu.Lock()
				delete(r.raised, ev.EventID)
				r.mu.Unlock()
				continue
			}
			if added {
				r.pub.Publish(ev.Alert())
			}
		}
	}
}
