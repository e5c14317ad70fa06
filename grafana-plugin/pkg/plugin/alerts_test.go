package plugin

import (
	"encoding/json"
	"testing"
)

func TestAlertTextOfHostAndForkAlerts(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    apiAlert
		want string
	}{
		{"host event", apiAlert{Severity: "CRITICAL", RuleName: "dead-man", Host: "web-01", TripwireType: "HOST",
			EventDetail: json.RawMessage(`{"kind":"OFFLINE","message":"host web-01 went silent: no heartbeat since 2026-12-07T10:00:00Z"}`)},
			"CRITICAL dead-man on web-01: host web-01 went silent: no heartbeat since 2026-12-07T10:00:00Z"},
		{"fork", apiAlert{Severity: "WARN", RuleName: "decoy", Host: "web-08", HostID: "f1", ForkOf: "h1",
			EventDetail: json.RawMessage(`{"path":"/srv/decoy","op":"read","user":"nobody","pid":42}`)},
			"WARN decoy on web-08: read /srv/decoy by nobody (pid 42) [fork f1 of h1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d eventDetail
			if err := json.Unmarshal(tc.a.EventDetail, &d); err != nil {
				t.Fatal(err)
			}
			if got := alertText(tc.a, d); got != tc.want {
				t.Errorf("alertText = %q, want %q", got, tc.want)
			}
		})
	}
}
