//go:build !linux && !darwin && !windows

package netwatch

import (
	"errors"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestMonitorRulesOffLinux(t *testing.T) {
	rules := []Rule{
		{Name: "decoy", Mode: ModeDecoy, Address: "127.0.0.1", Ports: []uint16{freePort(t)}},
		{Name: "ssh", Ports: []uint16{22}},
	}
	if _, err := New(rules, Options{ForceMode: ModeEBPF}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("forced eBPF: New = %v, want ErrNotSupported", err)
	}
	w, s := start(t, rules, Options{})
	if w.Mode() != ModeDecoy || !strings.Contains(w.Degraded(), "monitor rules ssh are not watched") {
		t.Fatalf("Mode = %q, Degraded = %q", w.Mode(), w.Degraded())
	}
	src := probe(t, "127.0.0.1", "127.0.0.1", rules[0].Ports[0], "hi")
	s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == src && ev.Source == ModeDecoy })
}
