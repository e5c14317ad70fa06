package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tripwire-project/tripwire/storage"
)

// Limits of /sql.
const (
	DefaultSQLRows = 1000
	MaxSQLRows     = 100_000
	// maxBodyBytes bounds a request body.
	maxBodyBytes = 1 << 20
	// flushEvery is how many NDJSON rows are written between flushes.
	flushEvery = 256
)

// alertCounts serves GET /alerts/counts: the alerts of the /alerts filters counted per
// interval and key.
func (a *API) alertCounts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, append(alertParams, "interval", "group_by")...); err != nil {
		badRequest(w, err)
		return
	}
	f, err := countFilter(q)
	if err != nil {
		badRequest(w, err)
		return
	}
	buckets, err := a.opts.Store.AlertCounts(r.Context(), f)
	if errors.Is(err, storage.ErrFilterTooBroad) {
		badRequest(w, &paramError{"status", err.Error()})
		return
	}
	if errors.Is(err, storage.ErrTooManyBuckets) {
		badRequest(w, &paramError{"group_by", fmt.Sprintf("more than %d buckets of %s: use a longer interval, a shorter range or a filter", storage.MaxCountBuckets, q.Get("group_by"))})
		return
	}
	if err != nil {
		a.storeError(w, "counting alerts", err)
		return
	}
	if buckets == nil {
		buckets = []storage.CountBucket{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"interval_s": int64(f.Interval / time.Second), "buckets": buckets})
}

func countFilter(q map[string][]string) (storage.CountFilter, error) {
	var f storage.CountFilter
	var err error
	if f.Alert, err = alertFilterOf(q); err != nil {
		return f, err
	}
	for _, p := range []struct {
		name string
		t    time.Time
	}{{"from", f.Alert.From}, {"to", f.Alert.To}} {
		if p.t.IsZero() {
			return f, &paramError{p.name, "required (RFC 3339)"}
		}
	}
	if f.Interval, err = intervalParam(first(q, "interval")); err != nil {
		return f, err
	}
	f.GroupBy = first(q, "group_by")
	if f.GroupBy == "" {
		f.GroupBy = storage.GroupByType
	}
	if !slices.Contains(storage.GroupByKeys, f.GroupBy) {
		return f, &paramError{"group_by", fmt.Sprintf("%q is not one of %s", f.GroupBy, strings.Join(storage.GroupByKeys, ", "))}
	}
	if n := storage.BucketSpan(f); n > storage.MaxCountBuckets {
		return f, &paramError{"interval", fmt.Sprintf("%d intervals between from and to, at most %d: use a longer interval or a shorter range", n, storage.MaxCountBuckets)}
	}
	return f, nil
}

// intervalParam reads an interval: a Go duration ("60s", "5m", "1h") or whole seconds
// ("60"), at least a second and a whole number of seconds.
func intervalParam(v string) (time.Duration, error) {
	if v == "" {
		return 0, &paramError{"interval", "required, e.g. 60s"}
	}
	d, err := time.ParseDuration(v)
	if n, nerr := strconv.ParseInt(v, 10, 64); nerr == nil && n < 1<<32 {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d < time.Second || d%time.Second != 0 {
		return 0, &paramError{"interval", fmt.Sprintf("%q is not a whole number of seconds ≥ 1 (e.g. 60s, 5m, 1h)", v)}
	}
	return d, nil
}

func first(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// triage serves PATCH /alerts/{alert_id}: {"status": ..., "note": ...}, recorded as the
// authenticated subject's.
func (a *API) triage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Status *string `json:"status"`
		Note   string  `json:"note"`
	}
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, err)
		return
	}
	switch {
	case body.Status == nil:
		badRequest(w, &paramError{"status", "required: one of " + strings.Join(storage.TriageStatuses, ", ")})
		return
	case !slices.Contains(storage.TriageStatuses, *body.Status):
		badRequest(w, &paramError{"status", fmt.Sprintf("%q is not one of %s", *body.Status, strings.Join(storage.TriageStatuses, ", "))})
		return
	}
	id := chi.URLParam(r, "alert_id")
	alert, err := a.opts.Store.SetTriage(r.Context(), id, *body.Status, Subject(r.Context()), body.Note)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "alert_id", fmt.Sprintf("no alert %q", id))
	case errors.Is(err, storage.ErrInvalidTriage):
		badRequest(w, &paramError{"note", err.Error()})
	case err != nil:
		a.storeError(w, "triaging alert", err)
	default:
		writeJSON(w, http.StatusOK, alert)
	}
}

// decodeBody strictly decodes a JSON request body into v: unknown fields and trailing
// data are refused, naming the field.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &paramError{te.Field, fmt.Sprintf("is a JSON %s, not a %s", te.Value, te.Type)}
		}
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &paramError{strings.Trim(field, `"`), "unknown field"}
		}
		return fmt.Errorf("request body is not a JSON object: %w", err)
	}
	if dec.More() {
		return errors.New("request body holds more than one JSON value")
	}
	return nil
}

// sql serves POST /sql: one read-only statement, its result streamed as NDJSON.
func (a *API) sql(w http.ResponseWriter, r *http.Request) {
	body := struct {
		Query   string `json:"query"`
		MaxRows *int   `json:"max_rows"`
	}{}
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, err)
		return
	}
	maxRows := DefaultSQLRows
	if body.MaxRows != nil {
		maxRows = *body.MaxRows
	}
	switch {
	case strings.TrimSpace(body.Query) == "":
		badRequest(w, &paramError{"query", "required: one SELECT statement"})
		return
	case maxRows < 1 || maxRows > MaxSQLRows:
		badRequest(w, &paramError{"max_rows", fmt.Sprintf("%d is not from 1 to %d", maxRows, MaxSQLRows)})
		return
	}
	out := &ndjson{w: w}
	n, truncated, err := a.opts.Store.Query(r.Context(), body.Query, maxRows, out)
	if err != nil {
		a.opts.Logger.Info("SQL query failed", "subject", Subject(r.Context()), "err", err)
	}
	switch {
	case err != nil && !out.started:
		writeError(w, http.StatusBadRequest, "query", err.Error())
	case err != nil:
		out.line(map[string]string{"error": err.Error()})
	default:
		out.start()
		out.line(map[string]any{"end": map[string]any{"rows": n, "truncated": truncated}})
	}
	out.flush()
}

// ndjson writes a Query result as newline-delimited JSON: the columns line, a JSON array
// per row, and a last line. Nothing is written before the first row (or the end), so
// that an error before it can still be a 400.
type ndjson struct {
	w       http.ResponseWriter
	cols    []storage.Column
	started bool
	pending int
	failed  bool // writing to the client failed: the rest is dropped
}

func (o *ndjson) Columns(cols []storage.Column) error {
	o.cols = slices.Clone(cols)
	return nil
}

func (o *ndjson) Row(values []any) error {
	o.start()
	o.line(values)
	if o.pending++; o.pending == flushEvery {
		o.flush()
	}
	if o.failed {
		return errors.New("writing the result: the client went away")
	}
	return nil
}

// start writes the header and the columns line, once.
func (o *ndjson) start() {
	if o.started {
		return
	}
	o.started = true
	o.w.Header().Set("Content-Type", "application/x-ndjson")
	o.w.WriteHeader(http.StatusOK)
	cols := o.cols
	if cols == nil {
		cols = []storage.Column{}
	}
	o.line(map[string]any{"columns": cols})
}

func (o *ndjson) line(v any) {
	if o.failed {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "encoding a row: " + err.Error()})
	}
	if _, err := o.w.Write(append(b, '\n')); err != nil {
		o.failed = true
	}
}

func (o *ndjson) flush() {
	o.pending = 0
	if f, ok := o.w.(http.Flusher); ok && !o.failed {
		f.Flush()
	}
}

// rules serves GET /rules: every central rule, or with ?host= those that apply to a
// host (global and its own).
func (a *API) rules(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "host"); err != nil {
		badRequest(w, err)
		return
	}
	rules, err := a.opts.Store.Rules(r.Context(), q.Get("host"))
	if err != nil {
		a.storeError(w, "listing rules", err)
		return
	}
	out := make([]map[string]any, 0, len(rules))
	for _, rule := range rules {
		out = append(out, ruleJSON(rule))
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": out})
}

// ruleJSON is a rule as the API shows it: its body's fields with name, type, severity,
// host and updated_at.
func ruleJSON(r storage.RuleRecord) map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(r.Body, &m) // a body is a JSON object: PutRules checks
	maps.Copy(m, map[string]any{"name": r.Name, "type": r.Type, "severity": r.Severity, "host": r.Host, "updated_at": r.UpdatedAt})
	return m
}

// putRules serves PUT /rules: {"rules": [...]} replaces every central rule (what
// `tripwire-collector rules apply` sends), and the answer says what was added, changed
// and removed. Each rule is an object in the agent's rule syntax with an optional host.
func (a *API) putRules(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Rules []map[string]json.RawMessage `json:"rules"`
	}
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, err)
		return
	}
	if body.Rules == nil {
		badRequest(w, &paramError{"rules", "required: a list of rules (empty removes every rule)"})
		return
	}
	records := make([]storage.RuleRecord, len(body.Rules))
	for i, fields := range body.Rules {
		rec, err := ruleRecord(fields)
		if err != nil {
			badRequest(w, &paramError{fmt.Sprintf("rules[%d].%s", i, err.param), err.msg})
			return
		}
		records[i] = rec
	}
	changes, err := a.opts.Store.PutRules(r.Context(), records)
	if errors.Is(err, storage.ErrInvalidRule) {
		badRequest(w, &paramError{"rules", err.Error()})
		return
	}
	if err != nil {
		a.storeError(w, "replacing rules", err)
		return
	}
	for _, l := range []*[]storage.RuleKey{&changes.Added, &changes.Changed, &changes.Removed} {
		if *l == nil {
			*l = []storage.RuleKey{}
		}
	}
	a.opts.Logger.Info("central rules replaced", "subject", Subject(r.Context()),
		"added", len(changes.Added), "changed", len(changes.Changed), "removed", len(changes.Removed))
	writeJSON(w, http.StatusOK, changes)
}

// ruleRecord makes the record of one rule object: host comes out of the body, name,
// type and severity are read from it, and updated_at may not be given.
func ruleRecord(fields map[string]json.RawMessage) (storage.RuleRecord, *paramError) {
	var rec storage.RuleRecord
	text := func(key string, dst *string, required bool) *paramError {
		raw, ok := fields[key]
		if !ok {
			if required {
				return &paramError{key, "required"}
			}
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return &paramError{key, "is not a string"}
		}
		if required && *dst == "" {
			return &paramError{key, "required"}
		}
		return nil
	}
	for _, f := range []struct {
		key      string
		dst      *string
		required bool
	}{{"name", &rec.Name, true}, {"type", &rec.Type, true}, {"severity", &rec.Severity, true}, {"host", &rec.Host, false}} {
		if err := text(f.key, f.dst, f.required); err != nil {
			return rec, err
		}
	}
	if _, ok := fields["updated_at"]; ok {
		return rec, &paramError{"updated_at", "is set by the collector"}
	}
	delete(fields, "host")
	body, err := json.Marshal(fields)
	if err != nil {
		return rec, &paramError{"name", err.Error()}
	}
	rec.Body = body
	return rec, nil
}
