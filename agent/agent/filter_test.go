package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sync"
	"testing"

	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/agent/redact"
	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestFilterAllowlistsAndRedacts(t *testing.T) {
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	r, _ := redact.New(nil, false)
	f := newFilter([]config.Rule{
		{Name: "shadow", Allow: config.Allow{Exes: []string{"/usr/sbin/backup*"}, Users: []string{"backup", "34"}}},
		{Name: "by-hash", Allow: config.Allow{ExeSHA256: []string{hex.EncodeToString(sum[:])}}},
		{Name: "by-parent", Allow: config.Allow{Parents: []string{"/usr/sbin/cron"}}},
		{Name: "plain"},
	}, r, new(sync.Map))
	uid := int64(34)
	cases := []struct {
		name string
		ev   chain.Event
		keep bool
	}{
		{"allowlisted exe", chain.Event{Rule: "shadow", Exe: "/usr/sbin/backup-nightly", Count: 3}, false},
		{"allowlisted user name", chain.Event{Rule: "shadow", User: "backup"}, false},
		{"allowlisted uid", chain.Event{Rule: "shadow", UID: &uid}, false},
		{"other actor", chain.Event{Rule: "shadow", Exe: "/usr/bin/cat", User: "root"}, true},
		{"same exe, other rule", chain.Event{Rule: "plain", Exe: "/usr/sbin/backup-nightly"}, true},
		{"content hash computed from exe", chain.Event{Rule: "by-hash", Exe: exe}, false},
		{"content hash given", chain.Event{Rule: "by-hash", ExeSHA256: hex.EncodeToString(sum[:])}, false},
		{"other content", chain.Event{Rule: "by-hash", Exe: "/bin/sh"}, true},
		{"allowlisted parent", chain.Event{Rule: "by-parent", ParentExe: "/usr/sbin/cron"}, false},
		{"other parent", chain.Event{Rule: "by-parent", ParentExe: "/bin/bash"}, true},
	}
	for _, c := range cases {
		ev := c.ev
		if got := f.pass(&ev); got != c.keep {
			t.Errorf("%s: pass = %v, want %v", c.name, got, c.keep)
		}
	}
	if got := f.suppressedByRule(); got["shadow"] != 5 || got["by-hash"] != 2 || got["by-parent"] != 1 {
		t.Errorf("suppressed = %v, want shadow 5 (3+1+1), by-hash 2, by-parent 1", got)
	}

	ev := chain.Event{Rule: "plain", Cmdline: "mysql --password=hunter2 -h db", FirstBytes: `"GET /?token=abc HTTP/1.1"`}
	if !f.pass(&ev) || ev.Cmdline != "mysql --password=[REDACTED] -h db" || ev.FirstBytes != `"GET /?token=[REDACTED] HTTP/1.1"` || !ev.Redacted {
		t.Errorf("redaction: %+v", ev)
	}
	clean := chain.Event{Rule: "plain", Cmdline: "cat /etc/passwd"}
	if !f.pass(&clean) || clean.Redacted {
		t.Errorf("a clean command line is marked redacted: %+v", clean)
	}
}
