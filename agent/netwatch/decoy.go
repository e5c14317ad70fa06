package netwatch

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// acceptBackoff is how long an accept loop pauses after an error such as running out of
// file descriptors, so as not to spin.
const acceptBackoff = 50 * time.Millisecond

// decoyListener is one listening socket of a decoy rule.
type decoyListener struct {
	spec decoySpec
	ln   net.Listener
}

// decoys accepts on the decoy ports, reads what each caller sends first and records
// the connection. At most MaxDecoyConns connections are served at once; the others are
// closed at once and counted as lost, so that a flood costs neither memory nor
// goroutines.
type decoys struct {
	w         *netWatcher
	log       *slog.Logger
	first     int
	wait      time.Duration
	listeners []decoyListener
	degraded  []string
	sem       chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup
}

// openDecoys binds every decoy port. On failure it closes what it bound and returns a
// *BindError.
func openDecoys(specs []decoySpec, opts Options, w *netWatcher) (*decoys, error) {
	d := &decoys{
		w:     w,
		log:   opts.Logger,
		first: opts.FirstBytes,
		wait:  opts.FirstBytesWait,
		sem:   make(chan struct{}, MaxDecoyConns),
		stop:  make(chan struct{}),
	}
	for _, s := range specs {
		if err := d.bind(s); err != nil {
			d.close()
			return nil, err
		}
	}
	return d, nil
}

// bind listens on one decoy port: on its address, or on 0.0.0.0 and [::] separately
// (so that IPv4 callers are seen as IPv4). A host without IPv6 gets the IPv4 listener
// only, and Degraded says so.
func (d *decoys) bind(s decoySpec) error {
	port := strconv.Itoa(int(s.port))
	if s.address != "" {
		return d.listen(s, "tcp", net.JoinHostPort(s.address, port))
	}
	if err := d.listen(s, "tcp4", net.JoinHostPort("0.0.0.0", port)); err != nil {
		return err
	}
	err := d.listen(s, "tcp6", net.JoinHostPort("::", port))
	if errors.Is(err, syscall.EAFNOSUPPORT) {
		d.log.Warn("decoy listens on IPv4 only", "rule", s.rule.Name, "port", s.port, "err", err)
		d.degraded = append(d.degraded, fmt.Sprintf("decoy rule %q port %d: IPv4 only (%v)", s.rule.Name, s.port, err))
		return nil
	}
	return err
}

func (d *decoys) listen(s decoySpec, network, addr string) error {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return &BindError{Rule: s.rule.Name, Port: s.port, Address: addr, Err: unwrapOp(err)}
	}
	d.listeners = append(d.listeners, decoyListener{spec: s, ln: ln})
	return nil
}

// unwrapOp drops the *net.OpError layer: BindError already names the address.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

// start runs an accept loop per listener.
func (d *decoys) start() {
	for _, l := range d.listeners {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.serve(l)
		}()
	}
}

// serve accepts until the listener is closed.
func (d *decoys) serve(l decoyListener) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("decoy accept failed", "rule", l.spec.rule.Name, "port", l.spec.port, "err", err)
			select {
			case <-time.After(acceptBackoff):
				continue
			case <-d.stop:
				return
			}
		}
		select {
		case d.sem <- struct{}{}:
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer func() { <-d.sem }()
				d.record(l.spec.rule, c)
			}()
		default:
			c.Close()
			d.w.refuse()
		}
	}
}

// record reads what the caller sends within the wait, then closes the connection and
// queues its event. FirstBytes is always set for a decoy: `""` means nothing was sent.
func (d *decoys) record(rule ruleRef, c net.Conn) {
	buf := make([]byte, d.first)
	n := readFirst(c, buf, time.Now().Add(d.wait))
	c.Close()
	local, lok := tcpAddrPort(c.LocalAddr())
	remote, rok := tcpAddrPort(c.RemoteAddr())
	if !lok || !rok {
		d.log.Error("decoy connection without TCP addresses", "rule", rule.Name, "local", c.LocalAddr(), "remote", c.RemoteAddr())
		return
	}
	base := chain.Event{FirstBytes: strconv.Quote(string(buf[:n]))}
	d.w.emit(connEvents([]ruleRef{rule}, ModeDecoy, ModeDecoy, DirectionInbound, local, remote, base))
}

// readFirst fills buf from c until it is full, the caller closes or deadline passes,
// and returns the number of bytes read.
func readFirst(c net.Conn, buf []byte, deadline time.Time) int {
	if err := c.SetReadDeadline(deadline); err != nil {
		return 0
	}
	n, _ := io.ReadFull(c, buf)
	return n
}

func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	t, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	return t.AddrPort(), true
}

// close stops the accept loops and waits for the connections being served, which end
// within FirstBytesWait.
func (d *decoys) close() error {
	close(d.stop)
	var errs []error
	for _, l := range d.listeners {
		if err := l.ln.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing decoy listener %s: %w", l.ln.Addr(), err))
		}
	}
	d.wg.Wait()
	return errors.Join(errs...)
}
