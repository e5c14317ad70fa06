package netwatch

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tripwire-project/tripwire/proto/chain"
)

const waitFor = 5 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// requireRoot skips a kernel test for an unprivileged developer, and fails it in CI.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) for eBPF and sock_diag; run as root, or set CI to make this a failure")
	}
	t.Fatal("needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) for eBPF and sock_diag, and CI is set")
}

// sink collects what a running watcher sends.
type sink struct {
	out chan chain.Event
}

// start runs a new watcher until the test ends.
func start(t *testing.T, rules []Rule, opts Options) (Watcher, *sink) {
	t.Helper()
	w, err := New(rules, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w, run(t, w)
}

func run(t *testing.T, w Watcher) *sink {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &sink{out: make(chan chain.Event, 256)}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, s.out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// until collects events until one satisfies stop, failing the test after timeout.
func (s *sink) until(t *testing.T, timeout time.Duration, stop func(chain.Event) bool) []chain.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var got []chain.Event
	for {
		select {
		case ev := <-s.out:
			got = append(got, ev)
			if stop(ev) {
				return got
			}
		case <-deadline.C:
			t.Fatalf("no matching event within %v; got %d: %+v", timeout, len(got), got)
			return nil
		}
	}
}

// freePort returns a TCP port free on every address, IPv4 and IPv6, a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// dialFrom connects from the local address from (any port) to host:port; the
// connection is closed when the test ends.
func dialFrom(t *testing.T, from, host string, port uint16) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: waitFor}
	c, err := d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		t.Fatalf("connecting from %s to %s port %d: %v", from, host, port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func localPort(c net.Conn) uint16 { return uint16(c.LocalAddr().(*net.TCPAddr).Port) }
