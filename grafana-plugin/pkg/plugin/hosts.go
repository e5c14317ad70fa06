package plugin

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// apiHost is a host as GET /api/v1/hosts sends it. Status (ONLINE, DEGRADED, OFFLINE) is nil
// from collectors that do not report one.
type apiHost struct {
	HostID       string    `json:"host_id"`
	Hostname     string    `json:"hostname"`
	OS           string    `json:"os"`
	Arch         string    `json:"arch"`
	Kernel       string    `json:"kernel"`
	AgentVersion string    `json:"agent_version"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
	HeadSeq      uint64    `json:"head_seq"`
	Status       *string   `json:"status"`
	// CertNotAfter is when the host's certificate expires (nil when not reported).
	CertNotAfter *time.Time `json:"cert_not_after"`
}

func (d *Datasource) fetchHosts(ctx context.Context) ([]apiHost, error) {
	var body struct {
		Hosts []apiHost `json:"hosts"`
	}
	if err := d.api.getJSON(ctx, "hosts", nil, &body); err != nil {
		return nil, err
	}
	return body.Hosts, nil
}

// sortHosts puts OFFLINE hosts first, then DEGRADED ones, then the rest, each by name.
func sortHosts(hosts []apiHost) {
	offline := func(h apiHost) int {
		switch {
		case h.Status == nil:
		case *h.Status == "OFFLINE":
			return 0
		case *h.Status == "DEGRADED":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(hosts, func(a, b apiHost) int {
		return cmp.Or(cmp.Compare(offline(a), offline(b)), cmp.Compare(a.Hostname, b.Hostname))
	})
}

// hostsFrame has the host name first, named "text" (shown as Host), so that a template
// variable built from a hosts query lists names. The status and certificate-expiry
// fields are there only when the collector reports them.
func hostsFrame(hosts []apiHost) *data.Frame {
	sortHosts(hosts)
	withStatus := slices.ContainsFunc(hosts, func(h apiHost) bool { return h.Status != nil })
	withCert := slices.ContainsFunc(hosts, func(h apiHost) bool { return h.CertNotAfter != nil })
	certExpiry := data.NewField("cert_not_after", nil, []*time.Time{}).SetConfig(&data.FieldConfig{DisplayName: "Certificate expires"})
	name := data.NewField("text", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Host"})
	id := data.NewField("host_id", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Host id"})
	status := data.NewField("status", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Status"})
	last := data.NewField("last_seen", nil, []time.Time{}).SetConfig(&data.FieldConfig{DisplayName: "Last seen"})
	first := data.NewField("first_seen", nil, []time.Time{}).SetConfig(&data.FieldConfig{DisplayName: "First seen"})
	ago := data.NewField("last_seen_age", nil, []float64{}).SetConfig(&data.FieldConfig{DisplayName: "Silent for", Unit: "s"})
	ver := data.NewField("agent_version", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Agent"})
	osf := data.NewField("os", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "OS"})
	kernel := data.NewField("kernel", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Kernel"})
	head := data.NewField("head_seq", nil, []int64{}).SetConfig(&data.FieldConfig{DisplayName: "Chain head seq"})
	now := time.Now()
	for _, h := range hosts {
		name.Append(h.Hostname)
		id.Append(h.HostID)
		if h.Status != nil {
			status.Append(*h.Status)
		} else {
			status.Append("")
		}
		last.Append(h.LastSeen.UTC())
		first.Append(h.FirstSeen.UTC())
		ago.Append(now.Sub(h.LastSeen).Seconds())
		ver.Append(h.AgentVersion)
		osf.Append(h.OS + "/" + h.Arch)
		kernel.Append(h.Kernel)
		head.Append(int64(h.HeadSeq))
		certExpiry.Append(h.CertNotAfter)
	}
	fields := []*data.Field{name, id}
	if withStatus {
		fields = append(fields, status)
	}
	fields = append(fields, last, ago, first, ver, osf, kernel, head)
	if withCert {
		fields = append(fields, certExpiry)
	}
	f := data.NewFrame("hosts", fields...)
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return f
}

func (d *Datasource) queryHosts(ctx context.Context) (backend.DataResponse, error) {
	hosts, err := d.fetchHosts(ctx)
	if err != nil {
		return backend.DataResponse{}, err
	}
	return backend.DataResponse{Frames: data.Frames{hostsFrame(hosts)}}, nil
}
