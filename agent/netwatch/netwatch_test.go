package netwatch

import (
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestNewRejectsBadRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []Rule
		opts  Options
		want  []string // substrings of the error, all reported at once
	}{
		{name: "no rules", want: []string{"no network rules"}},
		{
			name:  "missing name and ports",
			rules: []Rule{{Mode: ModeDecoy}},
			want:  []string{"network rule 0: name is required", `network rule "": at least one port is required`},
		},
		{
			name:  "port zero",
			rules: []Rule{{Name: "z", Ports: []uint16{0}}},
			want:  []string{`network rule "z": port 0 is not a port`},
		},
		{
			name:  "unknown mode and direction",
			rules: []Rule{{Name: "m", Ports: []uint16{22}, Mode: "sniff"}, {Name: "d", Ports: []uint16{22}, Direction: "sideways"}},
			want:  []string{`network rule "m": mode "sniff" is not one of decoy, monitor`, `network rule "d": direction "sideways" is not one of inbound, outbound, both`},
		},
		{
			name:  "address on a monitor rule, direction on a decoy, bad address",
			rules: []Rule{{Name: "a", Ports: []uint16{22}, Address: "127.0.0.1"}, {Name: "b", Ports: []uint16{22}, Mode: ModeDecoy, Direction: DirectionOutbound, Address: "localhost"}},
			want: []string{`network rule "a": address applies to decoy rules only`, `network rule "b": direction "outbound" applies to monitor rules only`,
				`network rule "b": address "localhost" is not an IP address`},
		},
		{
			name:  "options out of bounds",
			rules: []Rule{{Name: "ok", Ports: []uint16{22}}},
			opts:  Options{ForceMode: "pcap", PollInterval: time.Second, FirstBytes: MaxFirstBytes + 1, FirstBytesWait: time.Minute},
			want:  []string{"PollInterval 1s is over 250ms", "FirstBytes 4097 is over 4096", "FirstBytesWait 1m0s is over 5s", `ForceMode "pcap" is not one of auto, ebpf, sockdiag`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.rules, tc.opts)
			if err == nil {
				w.Close()
				t.Fatal("New accepted them")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestPlanExcludesDecoyPortsFromMonitor(t *testing.T) {
	p, err := buildPlan([]Rule{
		{Name: "decoy", Severity: chain.SeverityCritical, Mode: ModeDecoy, Ports: []uint16{2222}},
		{Name: "ssh", Severity: chain.SeverityWarn, Ports: []uint16{22, 2222}, Direction: DirectionBoth},
	})
	if err != nil {
		t.Fatal(err)
	}
	ssh := []ruleRef{{Name: "ssh", Severity: chain.SeverityWarn}}
	want := watchSet{
		{port: 22, direction: DirectionInbound}:    ssh,
		{port: 22, direction: DirectionOutbound}:   ssh,
		{port: 2222, direction: DirectionOutbound}: ssh,
	}
	if !reflect.DeepEqual(p.watch, want) {
		t.Errorf("watch = %v, want %v", p.watch, want)
	}
	if !reflect.DeepEqual(p.excluded, []string{"ssh 2222/inbound"}) {
		t.Errorf("excluded = %q", p.excluded)
	}
}

// probe connects from from to a decoy, sends payload and waits until the decoy closes
// the connection; it returns the client's port.
func probe(t *testing.T, from, host string, port uint16, payload string) uint16 {
	t.Helper()
	c := dialFrom(t, from, host, port)
	if payload != "" {
		if _, err := io.WriteString(c, payload); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	// A decoy that closes with bytes left unread resets the connection.
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("decoy did not close the connection: %v", err)
	}
	return localPort(c)
}

func TestDecoyReportsCaller(t *testing.T) {
	port := freePort(t)
	w, s := start(t, []Rule{{Name: "ssh-decoy", Severity: chain.SeverityCritical, Mode: ModeDecoy, Ports: []uint16{port}}}, Options{})
	if w.Mode() != ModeDecoy || w.Degraded() != "" {
		t.Fatalf("Mode = %q, Degraded = %q", w.Mode(), w.Degraded())
	}
	const hello = "SSH-2.0-probe\r\n"
	for _, tc := range []struct{ from, to, ip, proto string }{
		{from: "127.0.0.2", to: "127.0.0.1", ip: "127.0.0.1", proto: "tcp"},
		{from: "::1", to: "::1", ip: "::1", proto: "tcp6"},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			src := probe(t, tc.from, tc.to, port, hello)
			got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == src })
			want := chain.Event{
				Type: chain.TypeNetwork, Rule: "ssh-decoy", Severity: chain.SeverityCritical, Source: ModeDecoy, Count: 1,
				Protocol: tc.proto, Direction: DirectionInbound, Mode: ModeDecoy,
				SrcIP: tc.from, SrcPort: src, DstIP: tc.ip, DstPort: port, FirstBytes: strconv.Quote(hello),
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecoyDoesNotWaitForSlowCaller(t *testing.T) {
	port := freePort(t)
	_, s := start(t, []Rule{{Name: "d", Mode: ModeDecoy, Address: "127.0.0.1", Ports: []uint16{port}}},
		Options{FirstBytes: 8, FirstBytesWait: 100 * time.Millisecond})

	silent := probe(t, "127.0.0.2", "127.0.0.1", port, "")
	ev := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == silent })[0]
	if ev.FirstBytes != `""` {
		t.Errorf("FirstBytes of a silent caller = %s, want \"\"", ev.FirstBytes)
	}
	long := probe(t, "127.0.0.2", "127.0.0.1", port, "GET /\x00\xff HTTP/1.1\r\n")
	ev = s.Until(t, waitFor, func(ev chain.Event) bool { return ev.SrcPort == long })[0]
	if want := strconv.Quote("GET /\x00\xff "); ev.FirstBytes != want {
		t.Errorf("FirstBytes = %s, want the first 8 bytes %s", ev.FirstBytes, want)
	}
}

func TestDecoyRefusalsCountAsLoss(t *testing.T) {
	port := freePort(t)
	losses := make(chan Loss, 4)
	w, s := start(t, []Rule{{Name: "d", Mode: ModeDecoy, Address: "127.0.0.1", Ports: []uint16{port}}},
		Options{FirstBytesWait: 2 * time.Second, OnLoss: func(l Loss) { losses <- l }})

	// MaxDecoyConns silent callers hold every slot for FirstBytesWait; one more is
	// turned away.
	for range MaxDecoyConns + 1 {
		dialFrom(t, "127.0.0.2", "127.0.0.1", port)
	}
	select {
	case l := <-losses:
		if want := (Loss{Source: ModeDecoy, Reason: LossDecoyBusy, Count: 1}); l != want {
			t.Errorf("loss = %+v, want %+v", l, want)
		}
	case <-time.After(waitFor):
		t.Fatal("no loss reported")
	}
	for range MaxDecoyConns {
		s.Until(t, waitFor, func(chain.Event) bool { return true })
	}
	if w.Lost() != 1 {
		t.Errorf("Lost = %d, want 1", w.Lost())
	}
}

func TestNewFailsOnPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	other := freePort(t)
	for _, addr := range []string{"", "127.0.0.1"} {
		w, err := New([]Rule{
			{Name: "free", Mode: ModeDecoy, Ports: []uint16{other}},
			{Name: "taken", Mode: ModeDecoy, Address: addr, Ports: []uint16{port}},
		}, Options{})
		if err == nil {
			w.Close()
			t.Fatalf("address %q: New bound a port in use", addr)
		}
		var be *BindError
		if !errors.As(err, &be) || be.Rule != "taken" || be.Port != port {
			t.Fatalf("address %q: error %v is not a BindError for rule taken, port %d", addr, err, port)
		}
		if !strings.Contains(err.Error(), `"taken"`) || !strings.Contains(err.Error(), strconv.Itoa(int(port))) {
			t.Errorf("error %q names neither rule nor port", err)
		}
		// The listener New bound before failing was released.
		if l, err := net.Listen("tcp", ":"+strconv.Itoa(int(other))); err != nil {
			t.Errorf("port %d still held after New failed: %v", other, err)
		} else {
			l.Close()
		}
	}
}

func TestRunAfterClose(t *testing.T) {
	w, err := New([]Rule{{Name: "d", Mode: ModeDecoy, Address: "127.0.0.1", Ports: []uint16{freePort(t)}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.Run(context.Background(), make(chan chain.Event)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestCloseEndsRun(t *testing.T) {
	port := freePort(t)
	w, err := New([]Rule{{Name: "d", Mode: ModeDecoy, Address: "127.0.0.1", Ports: []uint16{port}}}, Options{FirstBytesWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan chain.Event)
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), out) }()
	probe(t, "127.0.0.2", "127.0.0.1", port, "")
	<-out // Run is running
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return after Close")
	}
}

func TestQueueLossesAreReported(t *testing.T) {
	var losses []Loss // written by Run's goroutine, read after it returns
	w, err := New([]Rule{{Name: "d", Mode: ModeDecoy, Address: "127.0.0.1", Ports: []uint16{freePort(t)}}},
		Options{OnLoss: func(l Loss) { losses = append(losses, l) }})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody runs the watcher yet: the queue fills and 3 events do not fit.
	for range queueLen + 3 {
		w.(*netWatcher).emit([]chain.Event{{Type: chain.TypeNetwork}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan chain.Event)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	<-out
	<-out
	cancel() // the rest cannot be sent: out is no longer read
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	want := []Loss{
		{Source: ModeDecoy, Reason: watcher.LossBufferFull, Count: 3},
		{Source: ModeDecoy, Reason: watcher.LossShutdown, Count: queueLen - 2},
	}
	if !reflect.DeepEqual(losses, want) {
		t.Errorf("losses = %+v, want %+v", losses, want)
	}
	if w.Lost() != queueLen+1 {
		t.Errorf("Lost = %d, want %d", w.Lost(), queueLen+1)
	}
}
