package fleet

import (
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// TestReadsAcrossMonths checks the reads that name the partition key (month) beside
// the time range, at the edges of months: the last nanosecond of March, the first of
// April, and a time before 1970.
func TestReadsAcrossMonths(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	march := time.Date(2026, 3, 31, 23, 59, 59, 999999999, time.UTC)
	april := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	old := time.Date(1969, 12, 31, 23, 0, 0, 1, time.UTC)
	c := storetest.NewChain()
	var es []batch.Entry
	for _, ts := range []time.Time{old, march, april} {
		es = append(es, c.Event(ts, chain.Event{Type: chain.TypeFile, Rule: "passwd", Severity: chain.SeverityCritical, Path: "/etc/passwd"}))
	}
	if err := s.AppendEntries(t.Context(), "h", es); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    storage.AlertFilter
		want []time.Time // newest first
	}{
		{"all", storage.AlertFilter{}, []time.Time{april, march, old}},
		{"from April", storage.AlertFilter{From: april}, []time.Time{april}},
		{"to April", storage.AlertFilter{To: april}, []time.Time{march, old}},
		{"the two nanoseconds around midnight", storage.AlertFilter{From: march, To: april.Add(time.Nanosecond)}, []time.Time{april, march}},
		{"text, to April", storage.AlertFilter{Text: "passwd", To: april}, []time.Time{march, old}},
		{"text, from the last nanosecond of March", storage.AlertFilter{Text: "passwd", From: march}, []time.Time{april, march}},
		{"host and text, from April", storage.AlertFilter{Host: "h", Text: "passwd", From: april}, []time.Time{april}},
	} {
		as, err := s.Alerts(t.Context(), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(as) != len(tc.want) {
			t.Errorf("%s: %d alerts, want %d", tc.name, len(as), len(tc.want))
			continue
		}
		for i, a := range as {
			if !a.Timestamp.Equal(tc.want[i]) || len(a.EventDetail) == 0 {
				t.Errorf("%s: alert %d at %v (detail %s), want %v with its detail", tc.name, i, a.Timestamp, a.EventDetail, tc.want[i])
			}
		}
	}
	counts, err := s.AlertCounts(t.Context(), storage.CountFilter{
		Alert: storage.AlertFilter{From: march.Add(-time.Hour), To: april}, Interval: time.Hour, GroupBy: storage.GroupByRule,
	})
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, b := range counts {
		n += b.Count
	}
	if n != 1 {
		t.Errorf("AlertCounts over the last hour of March counted %d alerts (%+v), want 1", n, counts)
	}
}
