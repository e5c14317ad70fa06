package api

import (
	"net/http"

	"github.com/tripwire-project/tripwire/storage"
)

// hostEvents lists what the collector raised about hosts (the dead-man switch: OFFLINE,
// ONLINE), newest first: GET /api/v1/host-events?from=&to=&limit=.
func (a *API) hostEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "from", "to", "limit"); err != nil {
		badRequest(w, err)
		return
	}
	from, to, err := timeRange(q.Get("from"), q.Get("to"))
	if err != nil {
		badRequest(w, err)
		return
	}
	limit, _, err := page(q.Get("limit"), "")
	if err != nil {
		badRequest(w, err)
		return
	}
	events, err := a.opts.Store.HostEvents(r.Context(), from, to, limit)
	if err != nil {
		a.storeError(w, "listing host events", err)
		return
	}
	if events == nil {
		events = []storage.HostEvent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}
