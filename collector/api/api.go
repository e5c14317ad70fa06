// Package api is the collector's REST API (chi): alerts (filtered, counted, triaged),
// hosts and audit entries for analysts and the Grafana plugin, read-only SQL over the
// store, the central rules, certificate revocation and one-time join tokens for
// enrolment, a live alert stream (server-sent events), and /healthz.
// Every /api route needs a bearer token, static or an RS256 JWT of the configured
// identity provider; bad parameters get a 400 that names the parameter. docs/api.md is
// the reference.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/tripwire-project/tripwire/collector/live"
	"github.com/tripwire-project/tripwire/storage"
)

// Limits on page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Options configure the API.
type Options struct {
	Store  storage.Store
	Broker *live.Broker
	// Tokens are the static bearer tokens accepted.
	Tokens []string
	// JWT, if set, also accepts RS256 JWTs of this identity provider.
	JWT    *JWTOptions
	Logger *slog.Logger
	// Version is reported by /healthz.
	Version string
	// Metrics, if set, serves /metrics (Prometheus text format, no token: the API listens
	// on loopback, and metrics carry no host ids, paths or PIDs).
	Metrics http.Handler
	// Enrol, if set, makes join tokens for the enrolment listener (tokens.go); nil
	// refuses: enrolment is off.
	Enrol *EnrolOptions
}

// API serves HTTP requests. It is safe for concurrent use.
type API struct {
	opts    Options
	jwt     *JWTVerifier // nil without Options.JWT
	started time.Time
	router  chi.Router
}

// New returns the API handler.
func New(opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{opts: opts, started: time.Now()}
	if opts.JWT != nil {
		a.jwt = NewJWTVerifier(*opts.JWT)
	}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", a.healthz)
	if opts.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", opts.Metrics)
	}
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(a.authenticate)
		r.Get("/alerts", a.alerts)
		r.Get("/alerts/counts", a.alertCounts)
		r.Get("/alerts/stream", a.alertStream)
		r.Patch("/alerts/{alert_id}", a.triage)
		r.Get("/hosts", a.hosts)
		r.Get("/host-events", a.hostEvents)
		r.Get("/audit", a.audit)
		r.Post("/sql", a.sql)
		r.Get("/rules", a.rules)
		r.Put("/rules", a.putRules)
		r.Post("/pki/revoke", a.revoke)
		r.Post("/pki/tokens", a.makeToken)
		r.Get("/pki/tokens", a.tokens)
	})
	a.router = r
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	status, code := "ok", http.StatusOK
	if _, _, err := a.opts.Store.Head(r.Context(), ""); err != nil {
		// /healthz needs no token: say what, not why; the log has the why.
		a.opts.Logger.Error("health check: store unavailable", "err", err)
		status, code = "store unavailable", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{
		"status":   status,
		"version":  a.opts.Version,
		"uptime_s": int64(time.Since(a.started).Seconds()),
	})
}

// paramError is a bad query parameter.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return fmt.Sprintf("parameter %q: %s", e.param, e.msg) }

var (
	tripwireTypes = []string{"FILE", "NETWORK", "PROCESS", storage.TypeHost}
	severities    = []string{"INFO", "WARN", "CRITICAL"}
)

func (a *API) alerts(w http.ResponseWriter, r *http.Request) {
	f, err := alertFilter(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	alerts, err := a.opts.Store.Alerts(r.Context(), f)
	if errors.Is(err, storage.ErrFilterTooBroad) {
		badRequest(w, &paramError{"q", err.Error()})
		return
	}
	if err != nil {
		a.storeError(w, "querying alerts", err)
		return
	}
	if alerts == nil {
		alerts = []storage.Alert{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": alerts, "limit": f.Limit, "offset": f.Offset})
}

// alertParams are the filters of /alerts and /alerts/counts.
var alertParams = []string{"host", "type", "severity", "rule", "status", "q", "from", "to"}

func alertFilter(r *http.Request) (storage.AlertFilter, error) {
	q := r.URL.Query()
	if err := onlyParams(q, append(alertParams, "limit", "offset")...); err != nil {
		return storage.AlertFilter{}, err
	}
	f, err := alertFilterOf(q)
	if err != nil {
		return f, err
	}
	f.Limit, f.Offset, err = page(q.Get("limit"), q.Get("offset"))
	return f, err
}

// maxTextParam bounds the host, rule and q parameters.
const maxTextParam = 256

// alertFilterOf reads the alertParams of q.
func alertFilterOf(q url.Values) (storage.AlertFilter, error) {
	f := storage.AlertFilter{Host: q.Get("host"), Rule: q.Get("rule"), Text: q.Get("q")}
	var err error
	if f.Type, err = enumParam(q.Get("type"), "type", tripwireTypes); err != nil {
		return f, err
	}
	if f.Severity, err = enumParam(q.Get("severity"), "severity", severities); err != nil {
		return f, err
	}
	if f.Status = q.Get("status"); f.Status != "" && !slices.Contains(storage.TriageStatuses, f.Status) {
		return f, &paramError{"status", fmt.Sprintf("%q is not one of %s", f.Status, strings.Join(storage.TriageStatuses, ", "))}
	}
	for _, p := range []struct{ name, v string }{{"host", f.Host}, {"rule", f.Rule}, {"q", f.Text}} {
		if len(p.v) > maxTextParam || !utf8.ValidString(p.v) || strings.IndexByte(p.v, 0) >= 0 {
			return f, &paramError{p.name, fmt.Sprintf("must be UTF-8 text of at most %d bytes, without NUL", maxTextParam)}
		}
	}
	f.From, f.To, err = timeRange(q.Get("from"), q.Get("to"))
	return f, err
}

func (a *API) hosts(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		badRequest(w, err)
		return
	}
	hosts, err := a.opts.Store.Hosts(r.Context())
	if err != nil {
		a.storeError(w, "listing hosts", err)
		return
	}
	if hosts == nil {
		hosts = []storage.Host{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"hosts": hosts})
}

func (a *API) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "host", "from", "to", "limit", "offset"); err != nil {
		badRequest(w, err)
		return
	}
	f := storage.AuditFilter{Host: q.Get("host")}
	var err error
	if f.From, f.To, err = timeRange(q.Get("from"), q.Get("to")); err != nil {
		badRequest(w, err)
		return
	}
	if f.Limit, f.Offset, err = page(q.Get("limit"), q.Get("offset")); err != nil {
		badRequest(w, err)
		return
	}
	entries, err := a.opts.Store.Audit(r.Context(), f)
	if err != nil {
		a.storeError(w, "querying audit entries", err)
		return
	}
	if entries == nil {
		entries = []storage.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries, "limit": f.Limit, "offset": f.Offset})
}

// alertStream sends each new alert as a server-sent event ("event: alert", data = the
// alert's JSON) as it is stored. Filters: host, type, severity. A comment line is sent
// every 15 s to keep proxies from closing an idle stream.
func (a *API) alertStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "host", "type", "severity"); err != nil {
		badRequest(w, err)
		return
	}
	host := q.Get("host")
	typ, err := enumParam(q.Get("type"), "type", tripwireTypes)
	if err != nil {
		badRequest(w, err)
		return
	}
	sev, err := enumParam(q.Get("severity"), "severity", severities)
	if err != nil {
		badRequest(w, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok || a.opts.Broker == nil {
		writeError(w, http.StatusNotImplemented, "", "streaming is not available")
		return
	}
	sub := a.opts.Broker.Subscribe()
	defer sub.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": subscribed\n\n")
	flusher.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
		case al, open := <-sub.C:
			if !open {
				// Cut off for falling behind: say so, the client reconnects and
				// catches up from /api/v1/alerts.
				fmt.Fprint(w, "event: overflow\ndata: {}\n\n")
				flusher.Flush()
				return
			}
			if (host != "" && host != al.Host && host != al.HostID) || (typ != "" && typ != al.TripwireType) || (sev != "" && sev != al.Severity) {
				continue
			}
			data, err := json.Marshal(al)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "id: %s\nevent: alert\ndata: %s\n\n", al.AlertID, data)
			flusher.Flush()
		}
	}
}

func onlyParams(q map[string][]string, allowed ...string) error {
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return &paramError{k, fmt.Sprintf("unknown parameter (allowed: %s)", strings.Join(allowed, ", "))}
		}
		if len(v) > 1 {
			return &paramError{k, "given more than once"}
		}
	}
	return nil
}

func enumParam(v, name string, allowed []string) (string, error) {
	if v == "" {
		return "", nil
	}
	up := strings.ToUpper(v)
	if !slices.Contains(allowed, up) {
		return "", &paramError{name, fmt.Sprintf("%q is not one of %s", v, strings.Join(allowed, ", "))}
	}
	return up, nil
}

func timeRange(from, to string) (f, t time.Time, err error) {
	parse := func(v, name string) (time.Time, error) {
		if v == "" {
			return time.Time{}, nil
		}
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, &paramError{name, fmt.Sprintf("%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", v)}
		}
		return ts.UTC(), nil
	}
	if f, err = parse(from, "from"); err != nil {
		return
	}
	if t, err = parse(to, "to"); err != nil {
		return
	}
	if !f.IsZero() && !t.IsZero() && t.Before(f) {
		err = &paramError{"to", "is before from"}
	}
	return
}

func page(limitS, offsetS string) (limit, offset int, err error) {
	limit = DefaultLimit
	if limitS != "" {
		if limit, err = strconv.Atoi(limitS); err != nil || limit < 1 || limit > MaxLimit {
			return 0, 0, &paramError{"limit", fmt.Sprintf("%q is not a whole number from 1 to %d", limitS, MaxLimit)}
		}
	}
	if offsetS != "" {
		if offset, err = strconv.Atoi(offsetS); err != nil || offset < 0 {
			return 0, 0, &paramError{"offset", fmt.Sprintf("%q is not a whole number ≥ 0", offsetS)}
		}
	}
	return limit, offset, nil
}

func (a *API) storeError(w http.ResponseWriter, doing string, err error) {
	a.opts.Logger.Error(doing, "err", err)
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, http.StatusNotFound, "", err.Error())
		return
	}
	writeError(w, http.StatusServiceUnavailable, "", doing+": the store is unavailable")
}

func badRequest(w http.ResponseWriter, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		writeError(w, http.StatusBadRequest, pe.param, pe.Error())
		return
	}
	writeError(w, http.StatusBadRequest, "", err.Error())
}

func writeError(w http.ResponseWriter, code int, param, msg string) {
	body := map[string]string{"error": msg}
	if param != "" {
		body["param"] = param
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
