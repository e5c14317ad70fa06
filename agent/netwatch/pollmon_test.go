package netwatch

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// scriptedConns is a TCP table whose listings a test sets: it drives the poll monitor
// that macOS and Windows share, which cannot run against their kernels here.
type scriptedConns struct {
	mu    sync.Mutex
	conns []tableConn
	err   error
	exes  map[int32]string
}

func (s *scriptedConns) set(conns []tableConn, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns, s.err = conns, err
}

func (s *scriptedConns) list() ([]tableConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conns), s.err
}

func (s *scriptedConns) exe(pid int32) string { return s.exes[pid] }
func (s *scriptedConns) limits() string       { return "scripted" }

var (
	sshListener  = tableConn{local: anyAddr(22), listening: true, pid: 100}
	webListener  = tableConn{local: ap("127.0.0.1:8080"), listening: true, pid: 200}
	sshIn        = tableConn{local: ap("10.0.0.5:22"), remote: ap("203.0.113.7:51000"), pid: 100}
	webIn        = tableConn{local: ap("127.0.0.1:8080"), remote: ap("127.0.0.1:50500"), pid: 200}
	webOut       = tableConn{local: ap("127.0.0.1:50500"), remote: ap("127.0.0.1:8080"), pid: 300}
	v6Out        = tableConn{local: ap("[2001:db8::5]:50123"), remote: ap("[2001:db8::9]:5432"), pid: 300}
	otherAddrOut = tableConn{local: ap("10.0.0.5:8080"), remote: ap("10.0.0.9:443")}
)

func TestDirection(t *testing.T) {
	table := []tableConn{sshListener, webListener, sshIn, webIn, webOut, v6Out, otherAddrOut}
	for _, tc := range []struct {
		name string
		c    tableConn
		dir  string
		port uint16
	}{
		{name: "accepted on a wildcard listener", c: sshIn, dir: DirectionInbound, port: 22},
		{name: "accepted on an address listener", c: webIn, dir: DirectionInbound, port: 8080},
		{name: "made from here to a local server", c: webOut, dir: DirectionOutbound, port: 8080},
		{name: "made from here over IPv6", c: v6Out, dir: DirectionOutbound, port: 5432},
		// The listener on 8080 is bound to 127.0.0.1 only: a socket on 10.0.0.5:8080
		// was not accepted by it.
		{name: "local port of a listener on another address", c: otherAddrOut, dir: DirectionOutbound, port: 443},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if dir, port := direction(tc.c, table); dir != tc.dir || port != tc.port {
				t.Errorf("direction = %s %d, want %s %d", dir, port, tc.dir, tc.port)
			}
		})
	}
}

func TestNewConns(t *testing.T) {
	fresh, seen := newConns(nil, []tableConn{sshListener, sshIn, webIn})
	if !reflect.DeepEqual(fresh, []tableConn{sshIn, webIn}) || len(seen) != 2 {
		t.Fatalf("first listing: fresh %+v, seen %v", fresh, seen)
	}
	// sshIn closed, webIn still open, webOut and a duplicate row of it are new.
	fresh, seen = newConns(seen, []tableConn{sshListener, webIn, webOut, webOut})
	if !reflect.DeepEqual(fresh, []tableConn{webOut}) || len(seen) != 2 {
		t.Fatalf("second listing: fresh %+v, seen %v", fresh, seen)
	}
	// A connection that closed and reopened with the same ends between two listings is
	// one connection to a poll: it is not reported again.
	if fresh, _ = newConns(seen, []tableConn{webIn, webOut}); fresh != nil {
		t.Errorf("third listing: fresh %+v", fresh)
	}
}

// startPoll runs a watcher whose monitor polls table every 5 ms.
func startPoll(t *testing.T, rules []Rule, table connTable, opts Options) (*netWatcher, *pollMonitor) {
	t.Helper()
	p, err := buildPlan(rules)
	if err != nil {
		t.Fatal(err)
	}
	opts.PollInterval = 5 * time.Millisecond
	opts, err = opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	w, err := newNetWatcher(plan{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newPollMonitor(p.watch, opts, w, table)
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	w.mon = m
	return w, m
}

func TestPollMonitor(t *testing.T) {
	table := &scriptedConns{exes: map[int32]string{100: "/usr/sbin/sshd"}}
	table.set([]tableConn{sshListener, webListener, webIn, webOut}, nil)
	w, _ := startPoll(t, []Rule{
		{Name: "ssh", Severity: chain.SeverityWarn, Ports: []uint16{22}},
		{Name: "web", Severity: chain.SeverityInfo, Ports: []uint16{8080}, Direction: DirectionBoth},
		{Name: "pg", Severity: chain.SeverityWarn, Ports: []uint16{5432}, Direction: DirectionOutbound},
	}, table, Options{})
	s := run(t, w)
	if w.Mode() != ModePoll {
		t.Errorf("Mode = %q", w.Mode())
	}
	if want := "poll: the TCP table is polled every 5ms, so a connection that opens and closes between two polls is missed; scripted"; w.mon.degraded() != want {
		t.Errorf("degraded = %q", w.mon.degraded())
	}

	// Connections open at the first listing are not reported; these three are new.
	table.set([]tableConn{sshListener, webListener, webIn, webOut, sshIn, v6Out, {local: ap("10.0.0.5:50000"), remote: ap("10.0.0.9:22")}}, nil)
	got := map[string]chain.Event{}
	s.Until(t, waitFor, func(ev chain.Event) bool {
		got[ev.Rule] = ev
		return len(got) == 2
	})
	wantSSH := chain.Event{
		Type: chain.TypeNetwork, Rule: "ssh", Severity: chain.SeverityWarn, Source: ModePoll, Mode: ModeMonitor, Count: 1,
		Direction: DirectionInbound, Protocol: "tcp", SrcIP: "203.0.113.7", SrcPort: 51000, DstIP: "10.0.0.5", DstPort: 22,
		PID: 100, Exe: "/usr/sbin/sshd", Missing: []string{"ppid", "cmdline", "uid", "user"},
	}
	wantPG := chain.Event{
		Type: chain.TypeNetwork, Rule: "pg", Severity: chain.SeverityWarn, Source: ModePoll, Mode: ModeMonitor, Count: 1,
		Direction: DirectionOutbound, Protocol: "tcp6", SrcIP: "2001:db8::5", SrcPort: 50123, DstIP: "2001:db8::9", DstPort: 5432,
		PID: 300, Missing: []string{"ppid", "exe", "cmdline", "uid", "user"},
	}
	if !reflect.DeepEqual(got["ssh"], wantSSH) {
		t.Errorf("ssh event\n got %+v\nwant %+v", got["ssh"], wantSSH)
	}
	if !reflect.DeepEqual(got["pg"], wantPG) {
		t.Errorf("pg event\n got %+v\nwant %+v", got["pg"], wantPG)
	}

	// A table that does not name owners (macOS netstat): the owner is all missing.
	table.set([]tableConn{sshListener, {local: ap("10.0.0.5:22"), remote: ap("203.0.113.8:40000")}}, nil)
	ev := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == 40000 })
	if last := ev[len(ev)-1]; last.PID != 0 || !slices.Equal(last.Missing, []string{"pid", "ppid", "exe", "cmdline", "uid", "user"}) {
		t.Errorf("ownerless event %+v", last)
	}
	for _, e := range ev {
		if e.Rule == "web" || e.DstPort == 22 && e.Direction == DirectionOutbound {
			t.Errorf("unexpected event %+v", e)
		}
	}
}

func TestPollMonitorGivesUp(t *testing.T) {
	table := &scriptedConns{}
	w, _ := startPoll(t, []Rule{{Name: "ssh", Ports: []uint16{22}}}, table, Options{})
	table.set(nil, errors.New("table unreadable"))
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), make(chan chain.Event)) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "poll network monitor: 5 listings in a row failed: table unreadable") {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(waitFor):
		w.Close()
		<-done
		t.Fatal("Run did not give up")
	}
}
