package netwatch

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/tripwire-project/tripwire/agent/proc"
	"github.com/tripwire-project/tripwire/proto/chain"
)

var monitorModes = []string{ModeEBPF, ModeSockDiag}

// startMonitor starts a watcher forced into mode, or skips (fails in CI) when the
// kernel or the privileges do not allow it.
func startMonitor(t *testing.T, mode string, rules []Rule) (Watcher, *sink) {
	t.Helper()
	requireRoot(t)
	w, err := New(rules, Options{ForceMode: mode})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s monitor unavailable (skipped outside CI only; needs Linux 5.8+ with BTF-era tracepoints and tracefs, as root): %v", mode, err)
		}
		t.Fatalf("%s monitor unavailable: %v", mode, err)
	}
	if w.Mode() != mode {
		w.Close()
		t.Fatalf("Mode = %q, want %q", w.Mode(), mode)
	}
	return w, run(t, w)
}

// server listens on addr and accepts (and holds) connections until the test ends.
func server(t *testing.T, network, addr string) uint16 {
	t.Helper()
	ln, err := net.Listen(network, addr)
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

// self is what the events of connections owned by the test binary say about it.
func self(t *testing.T) chain.Event {
	t.Helper()
	info, err := proc.Lookup(int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	uid := int64(os.Getuid())
	return chain.Event{PID: info.PID, PPID: info.PPID, UID: &uid, User: "root", Exe: info.Exe, Cmdline: info.Cmdline}
}

func connEvent(owner chain.Event, rule, source, direction, proto, srcIP string, srcPort uint16, dstIP string, dstPort uint16) chain.Event {
	ev := owner
	ev.Type, ev.Rule, ev.Severity, ev.Source, ev.Count = chain.TypeNetwork, rule, chain.SeverityWarn, source, 1
	ev.Mode, ev.Direction, ev.Protocol = ModeMonitor, direction, proto
	ev.SrcIP, ev.SrcPort, ev.DstIP, ev.DstPort = srcIP, srcPort, dstIP, dstPort
	return ev
}

// equalEvent compares an event with want, taking the kernel's task name (which only
// outbound eBPF events carry) as present or absent.
func equalEvent(t *testing.T, got, want chain.Event, wantComm bool) {
	t.Helper()
	if wantComm != (got.Comm != "") {
		t.Errorf("Comm = %q, want it set: %v", got.Comm, wantComm)
	}
	got.Comm = ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %s\nwant %s", describe(got), describe(want))
	}
}

func describe(ev chain.Event) string {
	uid := "<nil>"
	if ev.UID != nil {
		uid = fmt.Sprint(*ev.UID)
	}
	return fmt.Sprintf("%+v uid=%s", ev, uid)
}

func TestMonitorInbound(t *testing.T) {
	for _, mode := range monitorModes {
		for _, tc := range []struct {
			name, network, listen, from, to, proto, srcIP, dstIP string
		}{
			{name: "v4", network: "tcp4", listen: "127.0.0.1:0", from: "127.0.0.2", to: "127.0.0.1", proto: "tcp", srcIP: "127.0.0.2", dstIP: "127.0.0.1"},
			{name: "v6", network: "tcp6", listen: "[::1]:0", from: "::1", to: "::1", proto: "tcp6", srcIP: "::1", dstIP: "::1"},
			{name: "v4-mapped", network: "tcp", listen: ":0", from: "127.0.0.2", to: "127.0.0.1", proto: "tcp", srcIP: "127.0.0.2", dstIP: "127.0.0.1"},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				watched := server(t, tc.network, tc.listen)
				unwatched := server(t, tc.network, tc.listen)
				_, s := startMonitor(t, mode, []Rule{{Name: "svc", Severity: chain.SeverityWarn, Ports: []uint16{watched}}})

				dialFrom(t, tc.from, tc.to, unwatched)
				c := dialFrom(t, tc.from, tc.to, watched)
				got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == localPort(c) })
				equalEvent(t, got[len(got)-1], connEvent(self(t), "svc", mode, DirectionInbound, tc.proto, tc.srcIP, localPort(c), tc.dstIP, watched), false)

				// Everything seen before this second connection has been sent by now.
				sentinel := dialFrom(t, tc.from, tc.to, watched)
				got = append(got, s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == localPort(sentinel) })...)
				for _, ev := range got {
					if ev.DstPort != watched || ev.Direction != DirectionInbound {
						t.Errorf("unexpected event %+v", ev)
					}
				}
			})
		}
	}
}

func TestMonitorOutbound(t *testing.T) {
	for _, mode := range monitorModes {
		t.Run(mode, func(t *testing.T) {
			port := server(t, "tcp4", "127.0.0.1:0")
			_, s := startMonitor(t, mode, []Rule{{Name: "egress", Severity: chain.SeverityWarn, Ports: []uint16{port}, Direction: DirectionOutbound}})

			c := dialFrom(t, "127.0.0.2", "127.0.0.1", port)
			got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == localPort(c) })
			if len(got) != 1 {
				t.Errorf("got %d events, want 1 (the server's side is not watched): %+v", len(got), got)
			}
			equalEvent(t, got[len(got)-1], connEvent(self(t), "egress", mode, DirectionOutbound, "tcp", "127.0.0.2", localPort(c), "127.0.0.1", port), mode == ModeEBPF)
		})
	}
}

func TestMonitorBoth(t *testing.T) {
	for _, mode := range monitorModes {
		t.Run(mode, func(t *testing.T) {
			port := server(t, "tcp4", "127.0.0.1:0")
			_, s := startMonitor(t, mode, []Rule{{Name: "both", Severity: chain.SeverityWarn, Ports: []uint16{port}, Direction: DirectionBoth}})

			c := dialFrom(t, "127.0.0.2", "127.0.0.1", port)
			seen := map[string]bool{}
			s.Until(t, waitFor, func(ev chain.Event) bool {
				if ev.SrcPort == localPort(c) {
					seen[ev.Direction] = true
				}
				return len(seen) == 2
			})
		})
	}
}

func TestMonitorSkipsDecoyPorts(t *testing.T) {
	for _, mode := range monitorModes {
		t.Run(mode, func(t *testing.T) {
			decoyPort, svc := freePort(t), server(t, "tcp4", "127.0.0.1:0")
			w, s := startMonitor(t, mode, []Rule{
				{Name: "decoy", Severity: chain.SeverityCritical, Mode: ModeDecoy, Ports: []uint16{decoyPort}},
				{Name: "svc", Severity: chain.SeverityWarn, Ports: []uint16{decoyPort, svc}},
			})
			if !strings.Contains(w.Degraded(), fmt.Sprintf("svc %d/inbound", decoyPort)) {
				t.Errorf("Degraded = %q does not name the excluded port", w.Degraded())
			}
			src := probe(t, "127.0.0.2", "127.0.0.1", decoyPort, "x")
			got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == src })
			sentinel := dialFrom(t, "127.0.0.2", "127.0.0.1", svc)
			got = append(got, s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == localPort(sentinel) })...)
			var decoyEvents int
			for _, ev := range got {
				if ev.DstPort == decoyPort {
					decoyEvents++
					if ev.Source != ModeDecoy {
						t.Errorf("decoy port reported by %s: %+v", ev.Source, ev)
					}
				}
			}
			if decoyEvents != 1 {
				t.Errorf("got %d events for one decoy connection: %+v", decoyEvents, got)
			}
		})
	}
}
