package plugin

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/live"
)

// Channel paths: "alerts" for every new alert, or "alerts/<filter>" where filter is the
// unpadded base64url of a streamFilter's JSON (Grafana channel paths allow only
// [A-Za-z0-9_\-=/.], which base64url fits).
const alertsPath = "alerts"

// streamFilter selects the alerts a live panel shows. Host, type and severity are
// filtered by the collector; rule and text by the plugin. New alerts are open, so a
// filter on any other status matches nothing.
type streamFilter struct {
	Host         string `json:"host,omitempty"`
	TripwireType string `json:"type,omitempty"`
	Severity     string `json:"severity,omitempty"`
	Rule         string `json:"rule,omitempty"`
	Status       string `json:"status,omitempty"`
	Text         string `json:"q,omitempty"`
}

func filterOf(q Query) streamFilter {
	return streamFilter{Host: q.Host, TripwireType: q.TripwireType, Severity: q.Severity, Rule: q.Rule, Status: q.Status, Text: q.Text}
}

// alertsChannel is the live channel of an alerts query.
func alertsChannel(pctx backend.PluginContext, q Query) string {
	path := alertsPath
	if f := filterOf(q); f != (streamFilter{}) {
		b, _ := json.Marshal(f)
		path += "/" + base64.RawURLEncoding.EncodeToString(b)
	}
	uid := ""
	if pctx.DataSourceInstanceSettings != nil {
		uid = pctx.DataSourceInstanceSettings.UID
	}
	return live.Channel{Scope: live.ScopeDatasource, Namespace: uid, Path: path}.String()
}

// parseStreamPath returns the filter of a channel path this plugin serves.
func parseStreamPath(path string) (streamFilter, error) {
	if path == alertsPath {
		return streamFilter{}, nil
	}
	enc, ok := strings.CutPrefix(path, alertsPath+"/")
	if !ok {
		return streamFilter{}, fmt.Errorf("channel path %q: not alerts or alerts/<filter>", path)
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return streamFilter{}, fmt.Errorf("channel path %q: filter is not base64url: %w", path, err)
	}
	var f streamFilter
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return streamFilter{}, fmt.Errorf("channel path %q: filter: %w", path, err)
	}
	q := Query{QueryType: QueryAlerts, Host: f.Host, TripwireType: f.TripwireType, Severity: f.Severity, Rule: f.Rule, Status: f.Status, Text: f.Text}
	if err := q.validate(); err != nil {
		return streamFilter{}, fmt.Errorf("channel path %q: %w", path, err)
	}
	return filterOf(q), nil
}

// matches applies the filters the collector's stream does not.
func (f streamFilter) matches(a apiAlert) bool {
	if f.Rule != "" && f.Rule != a.RuleName {
		return false
	}
	status := cmp.Or(a.TriageStatus, "open")
	if f.Status != "" && f.Status != status {
		return false
	}
	return f.Text == "" || strings.Contains(strings.ToLower(string(a.EventDetail)), strings.ToLower(f.Text))
}

// SubscribeStream accepts the channels QueryData hands out and refuses any other.
func (d *Datasource) SubscribeStream(_ context.Context, req *backend.SubscribeStreamRequest) (*backend.SubscribeStreamResponse, error) {
	if d.settingsErr != nil {
		return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusPermissionDenied}, nil
	}
	if _, err := parseStreamPath(req.Path); err != nil {
		backend.Logger.Warn("refused a stream subscription", "path", req.Path, "err", err)
		return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusNotFound}, nil
	}
	return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusOK}, nil
}

// PublishStream refuses: alerts come from agents only.
func (d *Datasource) PublishStream(context.Context, *backend.PublishStreamRequest) (*backend.PublishStreamResponse, error) {
	return &backend.PublishStreamResponse{Status: backend.PublishStreamStatusPermissionDenied}, nil
}

// Reconnection backoff bounds for the collector's stream.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// RunStream follows the collector's live alert stream and sends each matching alert as a
// one-row alerts frame. When the stream breaks (collector restart, overflow) it
// reconnects with backoff and first sends the alerts it missed, read from
// /api/v1/alerts since the last one it sent, skipping those already sent. It returns nil
// when ctx ends (the last subscriber left).
func (d *Datasource) RunStream(ctx context.Context, req *backend.RunStreamRequest, sender *backend.StreamSender) error {
	if d.settingsErr != nil {
		return d.settingsErr
	}
	f, err := parseStreamPath(req.Path)
	if err != nil {
		return err
	}
	r := &streamRun{d: d, filter: f, sender: sender, sent: map[string]time.Time{}, since: time.Now()}
	backoff := minBackoff
	for {
		connected, err := r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = minBackoff
		}
		backend.Logger.Warn("collector alert stream broke; reconnecting", "path", req.Path, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// streamRun is the state of one RunStream: what was sent, so that a catch-up after a
// reconnect sends nothing twice.
type streamRun struct {
	d      *Datasource
	filter streamFilter
	sender *backend.StreamSender
	// sent holds ids of alerts sent with their times; last is the newest time sent.
	sent   map[string]time.Time
	last   time.Time
	lastID string
	// since is when the subscription began: a catch-up sends nothing older.
	since     time.Time
	connected bool
}

// dedupWindow is how far before the newest sent alert ids are remembered: alerts of a
// host arrive in time order, but hosts' clocks and delivery delays differ.
const dedupWindow = 10 * time.Minute

// follow runs one connection to the collector's stream until it breaks. connected says
// whether the stream was opened.
func (r *streamRun) follow(ctx context.Context) (connected bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := r.open(ctx)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if r.connected {
		if err := r.catchUp(ctx); err != nil {
			return true, err
		}
	}
	r.connected = true
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var event, payload string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if err := r.dispatch(event, payload); err != nil {
				return true, err
			}
			event, payload = "", ""
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			payload += strings.TrimPrefix(line[len("data:"):], " ")
		}
	}
	return true, cmp.Or(sc.Err(), errors.New("the collector closed the stream"))
}

func (r *streamRun) open(ctx context.Context) (*http.Response, error) {
	v := url.Values{}
	for k, val := range map[string]string{"host": r.filter.Host, "type": r.filter.TripwireType, "severity": r.filter.Severity} {
		if val != "" {
			v.Set(k, val)
		}
	}
	api := r.d.api
	u := api.base + "/api/v1/alerts/stream"
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+api.token)
	req.Header.Set("Accept", "text/event-stream")
	if r.lastID != "" {
		// The collector may resume from here; the catch-up covers it when it does not.
		req.Header.Set("Last-Event-ID", r.lastID)
	}
	resp, err := api.http.Do(req)
	if err != nil {
		return nil, &ConnError{URL: api.base, TLS: isTLSError(err), Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readAPIError(resp, http.MethodGet, "alerts/stream")
	}
	return resp, nil
}

// catchUp sends the alerts stored since the last one sent that were not sent, oldest
// first.
func (r *streamRun) catchUp(ctx context.Context) error {
	q := Query{Host: r.filter.Host, TripwireType: r.filter.TripwireType, Severity: r.filter.Severity, Rule: r.filter.Rule, Limit: maxLimit}
	from := r.since
	if t := r.last.Add(-dedupWindow); t.After(from) {
		from = t
	}
	missed, err := r.d.fetchAlerts(ctx, q, backend.TimeRange{From: from})
	if err != nil {
		return fmt.Errorf("catching up after a reconnect: %w", err)
	}
	slices.Reverse(missed)
	for _, a := range missed {
		if err := r.send(a); err != nil {
			return err
		}
	}
	return nil
}

func (r *streamRun) dispatch(event, payload string) error {
	switch event {
	case "alert":
		var a apiAlert
		if err := json.Unmarshal([]byte(payload), &a); err != nil {
			backend.Logger.Warn("skipping an undecodable alert on the collector's stream", "err", err)
			return nil
		}
		return r.send(a)
	case "overflow":
		return errors.New("the collector cut the stream off for falling behind")
	}
	return nil
}

// send sends a once, if it matches.
func (r *streamRun) send(a apiAlert) error {
	if _, dup := r.sent[a.AlertID]; dup || !r.filter.matches(a) {
		return nil
	}
	if err := r.sender.SendFrame(frameOf(a), data.IncludeAll); err != nil {
		return fmt.Errorf("sending alert %s to Grafana: %w", a.AlertID, err)
	}
	r.sent[a.AlertID] = a.Timestamp
	if a.Timestamp.After(r.last) {
		r.last, r.lastID = a.Timestamp, a.AlertID
	}
	if len(r.sent) > 4096 {
		for id, t := range r.sent {
			if t.Before(r.last.Add(-dedupWindow)) {
				delete(r.sent, id)
			}
		}
	}
	return nil
}
