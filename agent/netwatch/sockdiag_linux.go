package netwatch

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/proto/chain"
)

const (
	// diagTimeout bounds a wait for the kernel's answer to a dump.
	diagTimeout = 2 * time.Second
	// stateMask selects the sockets a sockdiag poll lists: connections, and the
	// listeners that tell inbound ones from outbound ones and name their owner.
	stateMask = 1<<tcpEstablished | 1<<tcpListen
)

// diagConn is a NETLINK_SOCK_DIAG socket. It is used from one goroutine only.
type diagConn struct {
	fd  int
	seq uint32
	buf []byte
}

func openDiag() (*diagConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("opening NETLINK_SOCK_DIAG socket: %w", err)
	}
	tv := unix.NsecToTimeval(diagTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting NETLINK_SOCK_DIAG receive timeout: %w", err)
	}
	return &diagConn{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (d *diagConn) close() error { return unix.Close(d.fd) }

// dump lists the TCP sockets of family whose state is in states (1<<state bits).
func (d *diagConn) dump(family uint8, states uint32) ([]diagSock, error) {
	d.seq++
	if err := unix.Sendto(d.fd, diagRequest(family, states, d.seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sending sock_diag request: %w", err)
	}
	var all []diagSock
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receiving sock_diag dump: %w", err)
		}
		socks, done, err := parseDump(d.buf[:n], d.seq)
		if err != nil {
			return nil, err
		}
		all = append(all, socks...)
		if done {
			return all, nil
		}
	}
}

// dumpBoth lists the TCP sockets of both families whose state is in states.
func (d *diagConn) dumpBoth(states uint32) ([]diagSock, error) {
	v4, err := d.dump(afInet, states)
	if err != nil {
		return nil, err
	}
	v6, err := d.dump(afInet6, states)
	if err != nil {
		return nil, err
	}
	return append(v4, v6...), nil
}

// listenerFor picks, among listeners, the one that accepted a connection whose local
// end is local: same family and port, and the same address or a wildcard one.
func listenerFor(listeners []diagSock, family uint8, local netip.AddrPort) (diagSock, bool) {
	var wildcard *diagSock
	for i, l := range listeners {
		if l.state != tcpListen || l.family != family || l.local.Port() != local.Port() {
			continue
		}
		if l.local.Addr() == local.Addr() {
			return l, true
		}
		if l.local.Addr().IsUnspecified() && wildcard == nil {
			wildcard = &listeners[i]
		}
	}
	if wildcard != nil {
		return *wildcard, true
	}
	return diagSock{}, false
}

// sockDiagMonitor lists the host's TCP sockets every PollInterval and reports the
// established ones on watched ports that the previous listing did not have.
type sockDiagMonitor struct {
	w        *netWatcher
	log      *slog.Logger
	watch    watchSet
	diag     *diagConn
	own      *owners
	interval time.Duration
	why      string
	prev     map[uint64]bool // cookies of the established sockets seen last time
	stop     chan struct{}
	done     chan struct{}
}

// newSockDiagMonitor takes a first listing, whose connections are not reported, and
// starts polling. why says why a better mode is not in use, if it is not.
func newSockDiagMonitor(watch watchSet, opts Options, w *netWatcher, why string) (*sockDiagMonitor, error) {
	d, err := openDiag()
	if err != nil {
		return nil, err
	}
	m := &sockDiagMonitor{
		w: w, log: opts.Logger, watch: watch, diag: d, own: newOwners(), interval: opts.PollInterval, why: why,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	socks, err := d.dumpBoth(stateMask)
	if err != nil {
		d.close()
		return nil, err
	}
	m.prev = map[uint64]bool{}
	for _, s := range socks {
		if s.state == tcpEstablished {
			m.prev[s.cookie] = true
		}
	}
	go m.run()
	return m, nil
}

func (m *sockDiagMonitor) run() {
	defer close(m.done)
	pollLoop(m.stop, m.interval, m.poll, m.log, "sockdiag", "polls", m.w.fail)
}

// poll lists the sockets once and reports the new connections.
func (m *sockDiagMonitor) poll() error {
	socks, err := m.diag.dumpBoth(stateMask)
	if err != nil {
		return err
	}
	seen := make(map[uint64]bool, len(m.prev))
	for _, s := range socks {
		if s.state != tcpEstablished {
			continue
		}
		seen[s.cookie] = true
		if !m.prev[s.cookie] {
			m.report(s, socks)
		}
	}
	m.prev = seen
	return nil
}

// report emits a new connection if its port is watched. A connection whose local port
// has a listener was accepted (inbound) and is attributed to the listener's owner; any
// other was made from here (outbound) and is attributed to its own socket's owner.
func (m *sockDiagMonitor) report(s diagSock, socks []diagSock) {
	if l, ok := listenerFor(socks, s.family, s.local); ok {
		refs := m.watch[portDir{port: s.local.Port(), direction: DirectionInbound}]
		if len(refs) == 0 {
			return
		}
		var ev chain.Event
		m.own.fill(&ev, m.own.bySocket(l.inode, l.uid))
		m.w.emit(connEvents(refs, ModeSockDiag, ModeMonitor, DirectionInbound, s.local, s.remote, ev))
		return
	}
	refs := m.watch[portDir{port: s.remote.Port(), direction: DirectionOutbound}]
	if len(refs) == 0 {
		return
	}
	var ev chain.Event
	m.own.fill(&ev, m.own.bySocket(s.inode, s.uid))
	m.w.emit(connEvents(refs, ModeSockDiag, ModeMonitor, DirectionOutbound, s.local, s.remote, ev))
}

func (m *sockDiagMonitor) mode() string { return ModeSockDiag }

func (m *sockDiagMonitor) degraded() string {
	d := fmt.Sprintf("sockdiag: polls every %v, so a connection that opens and closes between two polls is missed, and the owner of an outbound connection is found only if its socket is still open", m.interval)
	if m.why != "" {
		return m.why + "; " + d
	}
	return d
}

// kernelLost is 0: a poll loses nothing it can count (see degraded).
func (m *sockDiagMonitor) kernelLost() uint64 { return 0 }

func (m *sockDiagMonitor) close() error {
	close(m.stop)
	<-m.done
	return m.diag.close()
}
