package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// apiAlert is an alert as the collector's API and live stream send it. The triage fields
// are absent from collectors older than triage: they read as "open", "" and nil.
type apiAlert struct {
	AlertID      string          `json:"alert_id"`
	Host         string          `json:"host"`
	HostID       string          `json:"host_id"`
	Seq          uint64          `json:"seq"`
	Timestamp    time.Time       `json:"timestamp"`
	TripwireType string          `json:"tripwire_type"`
	RuleName     string          `json:"rule_name"`
	Severity     string          `json:"severity"`
	TriageStatus string          `json:"triage_status"`
	TriageBy     string          `json:"triage_by"`
	TriageAt     *time.Time      `json:"triage_at"`
	EventDetail  json.RawMessage `json:"event_detail"`
	// ForkOf is set on an alert of a fork: the chain (host id) it departs from.
	ForkOf string `json:"fork_of"`
}

// eventDetail holds the event fields an alerts frame flattens into columns.
type eventDetail struct {
	Path      string `json:"path"`
	Op        string `json:"op"`
	PID       *int64 `json:"pid"`
	PPID      *int64 `json:"ppid"`
	UID       *int64 `json:"uid"`
	User      string `json:"user"`
	Exe       string `json:"exe"`
	Cmdline   string `json:"cmdline"`
	ParentExe string `json:"parent_exe"`
	Protocol  string `json:"protocol"`
	SrcIP     string `json:"src_ip"`
	SrcPort   *int64 `json:"src_port"`
	DstPort   *int64 `json:"dst_port"`
	Source    string `json:"source"`
	// Message is what a HOST alert (raised by the collector) says.
	Message string `json:"message"`
}

// alertFilterParams turns a query's filters into the collector's query parameters; only
// set filters are sent, so that a collector without the newer ones still serves the rest.
func alertFilterParams(q Query) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("host", q.Host)
	set("type", q.TripwireType)
	set("severity", q.Severity)
	set("rule", q.Rule)
	set("status", q.Status)
	set("q", q.Text)
	return v
}

func setTimeRange(v url.Values, tr backend.TimeRange) {
	if !tr.From.IsZero() {
		v.Set("from", tr.From.UTC().Format(time.RFC3339Nano))
	}
	if !tr.To.IsZero() {
		v.Set("to", tr.To.UTC().Format(time.RFC3339Nano))
	}
}

func limitOr100(limit int) int {
	if limit == 0 {
		return 100
	}
	return limit
}

// fetchAlerts returns the alerts of q in the time range, newest first.
func (d *Datasource) fetchAlerts(ctx context.Context, q Query, tr backend.TimeRange) ([]apiAlert, error) {
	v := alertFilterParams(q)
	setTimeRange(v, tr)
	v.Set("limit", strconv.Itoa(limitOr100(q.Limit)))
	var body struct {
		Alerts []apiAlert `json:"alerts"`
	}
	if err := d.api.getJSON(ctx, "alerts", v, &body); err != nil {
		return nil, err
	}
	return body.Alerts, nil
}

// newAlertsFrame returns an empty alerts frame: one row per alert, with the time, text
// and tags fields Grafana's annotations read.
func newAlertsFrame(name string) *data.Frame {
	str := func(n, display string) *data.Field {
		return data.NewField(n, nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: display})
	}
	num := func(n, display string) *data.Field {
		return data.NewField(n, nil, []*int64{}).SetConfig(&data.FieldConfig{DisplayName: display, Unit: "none"})
	}
	f := data.NewFrame(name,
		data.NewField("time", nil, []time.Time{}).SetConfig(&data.FieldConfig{DisplayName: "Time"}),
		str("host", "Host"),
		str("tripwire_type", "Type"),
		str("rule_name", "Rule"),
		str("severity", "Severity"),
		str("triage_status", "Status"),
		num("pid", "PID"),
		num("ppid", "PPID"),
		num("uid", "UID"),
		str("user", "User"),
		str("exe", "Executable"),
		str("cmdline", "Command line"),
		str("path", "Path"),
		str("op", "Operation"),
		str("src_ip", "Source IP"),
		num("src_port", "Source port"),
		num("dst_port", "Port"),
		str("protocol", "Protocol"),
		str("source", "Seen by"),
		str("message", "Message"),
		str("fork_of", "Fork of"),
		str("triage_by", "Triaged by"),
		data.NewField("triage_at", nil, []*time.Time{}).SetConfig(&data.FieldConfig{DisplayName: "Triaged at"}),
		str("alert_id", "Alert id"),
		str("host_id", "Host id"),
		num("seq", "Seq"),
		str("text", "Summary"),
		str("tags", "Tags"),
	)
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return f
}

// appendAlert adds a row for a to an alerts frame.
func appendAlert(f *data.Frame, a apiAlert) {
	var d eventDetail
	if len(a.EventDetail) > 0 {
		// A detail that does not decode leaves the flattened columns empty; the row stays.
		_ = json.Unmarshal(a.EventDetail, &d)
	}
	status := a.TriageStatus
	if status == "" {
		status = "open"
	}
	seq := int64(a.Seq)
	f.AppendRow(a.Timestamp.UTC(), a.Host, a.TripwireType, a.RuleName, a.Severity, status,
		d.PID, d.PPID, d.UID, d.User, d.Exe, d.Cmdline, d.Path, d.Op, d.SrcIP, d.SrcPort, d.DstPort,
		d.Protocol, d.Source, d.Message, a.ForkOf, a.TriageBy, a.TriageAt, a.AlertID, a.HostID, &seq,
		alertText(a, d), strings.Join([]string{a.TripwireType, a.Severity, a.RuleName, a.Host}, ","))
}

// alertText is a one-line summary: who did what to which tripwire.
func alertText(a apiAlert, d eventDetail) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s on %s", a.Severity, a.RuleName, a.Host)
	if d.Op != "" || d.Path != "" {
		fmt.Fprintf(&b, ": %s %s", d.Op, d.Path)
	}
	if d.SrcIP != "" {
		fmt.Fprintf(&b, ": from %s", d.SrcIP)
		if d.DstPort != nil {
			fmt.Fprintf(&b, " to port %d", *d.DstPort)
		}
	}
	if d.User != "" || d.PID != nil {
		b.WriteString(" by")
		if d.User != "" {
			b.WriteString(" " + d.User)
		}
		if d.PID != nil {
			fmt.Fprintf(&b, " (pid %d", *d.PID)
			if d.Exe != "" {
				b.WriteString(" " + d.Exe)
			}
			b.WriteString(")")
		}
	}
	if d.Message != "" {
		b.WriteString(": " + d.Message)
	}
	if a.ForkOf != "" {
		fmt.Fprintf(&b, " [fork %s of %s]", a.HostID, a.ForkOf)
	}
	return b.String()
}

func (d *Datasource) queryAlerts(ctx context.Context, pctx backend.PluginContext, q Query, tr backend.TimeRange) (backend.DataResponse, error) {
	alerts, err := d.fetchAlerts(ctx, q, tr)
	if err != nil {
		return backend.DataResponse{}, err
	}
	f := newAlertsFrame("alerts")
	for _, a := range alerts {
		appendAlert(f, a)
	}
	if q.Live {
		f.Meta.Channel = alertsChannel(pctx, q)
	}
	return backend.DataResponse{Frames: data.Frames{f}}, nil
}
