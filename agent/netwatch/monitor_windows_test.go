package netwatch

import (
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// TestPollMonitorOnWindows connects to a real local server and expects
// GetExtendedTcpTable polling to report both ends, owned by the test itself.
func TestPollMonitorOnWindows(t *testing.T) {
	port := listenAndHold(t, "127.0.0.1:0")
	rules := []Rule{{Name: "svc", Severity: chain.SeverityWarn, Ports: []uint16{port}, Direction: DirectionBoth}}
	for _, mode := range []string{ModeEBPF, ModeSockDiag} {
		if _, err := New(rules, Options{ForceMode: mode}); !errors.Is(err, ErrNotSupported) {
			t.Errorf("New(%s) = %v, want ErrNotSupported", mode, err)
		}
	}
	w, s := start(t, rules, Options{})
	if w.Mode() != ModePoll {
		t.Fatalf("Mode = %q, Degraded = %q", w.Mode(), w.Degraded())
	}
	c := dialFrom(t, "127.0.0.1", "127.0.0.1", port)
	seen := map[string]chain.Event{}
	s.Until(t, waitFor, func(ev chain.Event) bool {
		if ev.SrcPort == localPort(c) {
			seen[ev.Direction] = ev
		}
		return len(seen) == 2
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for dir, ev := range seen {
		if ev.Source != ModePoll || ev.DstPort != port || ev.SrcIP != "127.0.0.1" || ev.PID != int32(os.Getpid()) || !strings.EqualFold(ev.Exe, self) {
			t.Errorf("%s event %+v", dir, ev)
		}
	}
}

// listenAndHold listens on addr and accepts (and holds) connections until the test
// ends; it returns the port.
func listenAndHold(t *testing.T, addr string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}
