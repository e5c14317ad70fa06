package plugin

import (
	"slices"
	"testing"
)

func TestSortHostsPutsOfflineThenDegradedFirst(t *testing.T) {
	status := func(s string) *string { return &s }
	hosts := []apiHost{
		{Hostname: "a-ok", Status: status("ONLINE")},
		{Hostname: "b-degraded", Status: status("DEGRADED")},
		{Hostname: "c-old-collector"},
		{Hostname: "d-offline", Status: status("OFFLINE")},
		{Hostname: "a-degraded", Status: status("DEGRADED")},
	}
	sortHosts(hosts)
	var got []string
	for _, h := range hosts {
		got = append(got, h.Hostname)
	}
	want := []string{"d-offline", "a-degraded", "b-degraded", "a-ok", "c-old-collector"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted = %v, want %v", got, want)
	}
}
