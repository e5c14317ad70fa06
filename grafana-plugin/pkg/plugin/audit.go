package plugin

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

type apiAuditEntry struct {
	Host     string    `json:"host"`
	HostID   string    `json:"host_id"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"timestamp"`
	Kind     string    `json:"kind"`
	PrevHash string    `json:"prev_hash"`
	Hash     string    `json:"hash"`
	Payload  string    `json:"payload"`
}

// queryAudit returns chain entries in (host, seq) order, as stored with their hash links.
func (d *Datasource) queryAudit(ctx context.Context, q Query, tr backend.TimeRange) (backend.DataResponse, error) {
	v := url.Values{}
	if q.Host != "" {
		v.Set("host", q.Host)
	}
	setTimeRange(v, tr)
	v.Set("limit", strconv.Itoa(limitOr100(q.Limit)))
	var body struct {
		Entries []apiAuditEntry `json:"entries"`
	}
	if err := d.api.getJSON(ctx, "audit", v, &body); err != nil {
		return backend.DataResponse{}, err
	}
	f := data.NewFrame("audit",
		data.NewField("time", nil, []time.Time{}).SetConfig(&data.FieldConfig{DisplayName: "Time"}),
		data.NewField("host", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Host"}),
		data.NewField("seq", nil, []int64{}).SetConfig(&data.FieldConfig{DisplayName: "Seq"}),
		data.NewField("kind", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Kind"}),
		data.NewField("prev_hash", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Previous hash"}),
		data.NewField("hash", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Hash"}),
		data.NewField("payload", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Payload"}),
		data.NewField("host_id", nil, []string{}).SetConfig(&data.FieldConfig{DisplayName: "Host id"}),
	)
	for _, e := range body.Entries {
		f.AppendRow(e.Time.UTC(), e.Host, int64(e.Seq), e.Kind, e.PrevHash, e.Hash, e.Payload, e.HostID)
	}
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return backend.DataResponse{Frames: data.Frames{f}}, nil
}
