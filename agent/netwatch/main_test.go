package netwatch

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/internal/watchtest"

	"go.uber.org/goleak"
)

const waitFor = 5 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// requireRoot skips a kernel test for an unprivileged developer, and fails it in CI.
func requireRoot(t *testing.T) {
	watchtest.RequireRoot(t, "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN for eBPF and sock_diag")
}

// sink collects what a running watcher sends.
type sink = watchtest.Sink

// run runs w until the test ends and fails the test if Run fails.
func run(t *testing.T, w Watcher) *sink { return watchtest.Run(t, w) }

// start runs a new watcher until the test ends.
func start(t *testing.T, rules []Rule, opts Options) (Watcher, *sink) {
	t.Helper()
	w, err := New(rules, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w, run(t, w)
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
