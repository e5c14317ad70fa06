package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

func TestFormatAlertShowsEachKind(t *testing.T) {
	ts := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		a    storage.Alert
		want []string
	}{
		{storage.Alert{Timestamp: ts, Severity: "WARN", TripwireType: "NETWORK", RuleName: "ssh-decoy", Host: "web-1",
			EventDetail: storage.RawJSON(`{"protocol":"tcp","src_ip":"127.0.0.2","src_port":40000,"dst_ip":"127.0.0.1","dst_port":2222,"first_bytes":"\"SSH-2.0-x\\r\\n\"","source":"decoy"}`)},
			[]string{"NETWORK", "ssh-decoy", "tcp 127.0.0.2:40000 -> 127.0.0.1:2222", `sent="SSH-2.0-x\r\n"`, "[decoy]"}},
		{storage.Alert{Timestamp: ts, Severity: "CRITICAL", TripwireType: "PROCESS", RuleName: "netcat", Host: "web-1",
			EventDetail: storage.RawJSON(`{"pid":42,"user":"nobody","exe":"/usr/bin/nc","cmdline":"nc -z 127.0.0.1 1","source":"ebpf"}`)},
			[]string{"pid=42", "user=nobody", `cmd="nc -z 127.0.0.1 1"`, "[ebpf]"}},
		{storage.Alert{Timestamp: ts, Severity: "WARN", TripwireType: "FILE", RuleName: "decoy", Host: "web-1", HostID: "f1", ForkOf: "h1",
			EventDetail: storage.RawJSON(`{"op":"read","path":"/srv/decoy","pid":7}`)},
			[]string{"host=web-1 FORK f1 of h1", "read /srv/decoy", "pid=7"}},
		{storage.NewHostEvent("h1", "web-1", storage.HostOffline, ts, ts.Add(-time.Minute)).Alert(),
			[]string{"CRITICAL", "HOST", "dead-man", "went silent"}},
	} {
		got := formatAlert(c.a)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("formatAlert = %q, missing %q", got, w)
			}
		}
	}
}
