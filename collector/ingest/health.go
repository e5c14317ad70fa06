package ingest

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// degradedReason sums up the watchers that run below their best mode, as
// "file: fsnotify (no reads, no actor); signals: none (...)", or "" when none does.
func degradedReason(ws []*tripwirev1.WatcherStatus) string {
	var parts []string
	for _, w := range ws {
		if r := w.GetDegradedReason(); r != "" {
			parts = append(parts, w.GetName()+": "+w.GetMode()+" ("+r+")")
		}
	}
	return strings.Join(parts, "; ")
}

// health records what an agent says of its watchers, once per change: the session
// keeps the last report, so that a heartbeat repeating it costs no write.
type health struct {
	last string // JSON of the last watchers recorded
}

// record stores ws as the host's watchers and their degradation, and sends the
// DEGRADED or RESTORED event the store raised, if any, to live subscribers. A store
// error is logged, not returned: health is reported again at the next heartbeat.
func (h *health) record(ctx context.Context, s *Server, hostID string, ws []*tripwirev1.WatcherStatus, log *slog.Logger) {
	text, err := json.Marshal(ws)
	if err != nil || string(text) == h.last {
		return
	}
	if string(text) == "null" {
		text = []byte("[]")
	}
	ev, changed, err := s.store.SetHostHealth(ctx, hostID, string(text), degradedReason(ws), s.now().UTC())
	if err != nil {
		log.Warn("recording watcher health", "err", err)
		return
	}
	h.last = string(text)
	if !changed {
		return
	}
	log.Warn("host watcher health changed", "kind", ev.Kind, "message", ev.Message)
	if s.broker != nil {
		s.broker.Publish(ev.Alert())
	}
}
