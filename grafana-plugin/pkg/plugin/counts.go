package plugin

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// maxBuckets is the collector's cap on buckets per counts response.
const maxBuckets = 10000

type countsBody struct {
	IntervalS int64 `json:"interval_s"`
	Buckets   []struct {
		Time  time.Time `json:"time"`
		Key   string    `json:"key"`
		Count int64     `json:"count"`
	} `json:"buckets"`
}

// countsInterval is the panel's interval in whole seconds (at least 1), widened so that
// the range holds at most maxBuckets buckets.
func countsInterval(tr backend.TimeRange, interval time.Duration) int64 {
	s := max(int64(interval/time.Second), 1)
	span := int64(tr.To.Sub(tr.From) / time.Second)
	if need := span/maxBuckets + 1; s < need {
		s = need
	}
	return s
}

func (d *Datasource) queryCounts(ctx context.Context, q Query, tr backend.TimeRange, interval time.Duration) (backend.DataResponse, error) {
	if tr.From.IsZero() || tr.To.IsZero() || !tr.To.After(tr.From) {
		return backend.DataResponse{}, &QueryError{"timeRange", "a counts query needs a time range with from before to"}
	}
	v := alertFilterParams(q)
	setTimeRange(v, tr)
	step := countsInterval(tr, interval)
	v.Set("interval", fmt.Sprintf("%ds", step))
	if q.GroupBy != "" {
		v.Set("group_by", q.GroupBy)
	}
	var body countsBody
	if err := d.api.getJSON(ctx, "alerts/counts", v, &body); err != nil {
		return backend.DataResponse{}, err
	}
	if body.IntervalS > 0 {
		step = body.IntervalS
	}
	f, err := countsFrame(body, tr, step, q.GroupBy)
	if err != nil {
		return backend.DataResponse{}, err
	}
	return backend.DataResponse{Frames: data.Frames{f}}, nil
}

// countsFrame is a wide time series: a time field with every bucket of the range (empty
// buckets count 0, so graphs and alert rules see zeros rather than gaps) and one count
// field per group key, labelled with it. With no group key, or no alerts at all, there is
// one field "alerts".
func countsFrame(body countsBody, tr backend.TimeRange, step int64, groupBy string) (*data.Frame, error) {
	label := groupBy
	if label == "" {
		label = "group"
	}
	counts := map[int64]map[string]int64{}
	var keys []string
	for _, b := range body.Buckets {
		t := b.Time.Unix()
		if counts[t] == nil {
			counts[t] = map[string]int64{}
		}
		key := b.Key
		if groupBy == "" {
			key = ""
		}
		counts[t][key] += b.Count
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		keys = []string{""}
	}
	long := data.NewFrame("counts",
		data.NewField("time", nil, []time.Time{}),
		data.NewField(label, nil, []string{}),
		data.NewField("alerts", nil, []int64{}),
	)
	first := tr.From.Unix() / step * step
	for t := first; t < tr.To.Unix(); t += step {
		for _, k := range keys {
			long.AppendRow(time.Unix(t, 0).UTC(), k, counts[t][k])
		}
	}
	if groupBy == "" || (len(keys) == 1 && keys[0] == "") {
		long.Fields = []*data.Field{long.Fields[0], long.Fields[2]}
		long.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1}}
		return long, nil
	}
	wide, err := data.LongToWide(long, nil)
	if err != nil {
		return nil, fmt.Errorf("building the counts time series: %w", err)
	}
	wide.Name = "counts"
	for _, fd := range wide.Fields[1:] {
		fd.SetConfig(&data.FieldConfig{DisplayNameFromDS: fd.Labels[label], Interval: float64(step * 1000)})
	}
	wide.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1}}
	return wide, nil
}
