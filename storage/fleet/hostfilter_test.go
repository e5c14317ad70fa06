package fleet

import (
	"slices"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// TestHostFilterResolvesIDs checks the host filter of Alerts and Audit, resolved to
// host ids before the query: a name shared by two hosts (a machine issued a new host
// id) matches both, an id matches its host alone, and an id the store holds entries of
// matches even when no host registered with it.
func TestHostFilterResolvesIDs(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	now := time.Now().UTC()
	for _, id := range []string{"id-old", "id-new"} {
		if err := s.RegisterHost(t.Context(), storage.Host{HostID: id, Hostname: "web", Watchers: "[]", LastSeen: now}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"id-old", "id-new", "id-unregistered"} {
		c := storetest.NewChain()
		e := c.Event(now.Add(time.Duration(i)*time.Second), chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityInfo})
		if err := s.AppendEntries(t.Context(), id, []batch.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		host string
		want []string
	}{
		{"web", []string{"id-new", "id-old"}},
		{"id-old", []string{"id-old"}},
		{"id-unregistered", []string{"id-unregistered"}},
		{"nobody", nil},
	} {
		as, err := s.Alerts(t.Context(), storage.AlertFilter{Host: tc.host})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range as {
			got = append(got, a.HostID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Alerts(host %q) are of hosts %v, want %v", tc.host, got, tc.want)
		}
		au, err := s.Audit(t.Context(), storage.AuditFilter{Host: tc.host})
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		for _, e := range au {
			got = append(got, e.HostID)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("Audit(host %q) is of hosts %v, want %v", tc.host, got, want)
		}
	}
}
