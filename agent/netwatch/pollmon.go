package netwatch

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/tripwire-project/tripwire/agent/proc"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// ModePoll is the monitor mode off Linux: the host's TCP table is polled every
// Options.PollInterval.
const ModePoll = "poll"

// maxPollFailures is how many listings in a row may fail before a polling monitor
// gives up and fails the watcher.
const maxPollFailures = 5

// pollLoop calls poll every interval until stop is closed. A failure is logged; after
// maxPollFailures in a row, fail is called with the last one and the loop ends. what
// names the monitor and unit what one poll does ("listings", "polls") in messages.
func pollLoop(stop <-chan struct{}, interval time.Duration, poll func() error, log *slog.Logger, what, unit string, fail func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		err := poll()
		if err == nil {
			failures = 0
			continue
		}
		failures++
		log.Warn(what+" network monitor: a poll failed", "err", err, "in_a_row", failures)
		if failures >= maxPollFailures {
			fail(fmt.Errorf("%s network monitor: %d %s in a row failed: %w", what, failures, unit, err))
			return
		}
	}
}

// connTable is a platform's table of TCP sockets, as the poll monitor reads it. Its
// methods are called from the monitor's goroutine only.
type connTable interface {
	// list returns the host's listening and established TCP sockets.
	list() ([]tableConn, error)
	// exe is the executable of process pid, "" if unknown.
	exe(pid int32) string
	// limits is what the table cannot tell, for Degraded.
	limits() string
}

// connKey identifies a connection across listings.
type connKey struct {
	local, remote netip.AddrPort
}

// pollMonitor lists a connTable every PollInterval and reports the established
// connections on watched ports that the previous listing did not have.
type pollMonitor struct {
	w        *netWatcher
	log      *slog.Logger
	watch    watchSet
	table    connTable
	interval time.Duration
	prev     map[connKey]bool // owned by run after newPollMonitor
	stop     chan struct{}
	done     chan struct{}
}

// newPollMonitor takes a first listing, whose connections are not reported, and
// starts polling.
func newPollMonitor(watch watchSet, opts Options, w *netWatcher, table connTable) (*pollMonitor, error) {
	conns, err := table.list()
	if err != nil {
		return nil, err
	}
	_, prev := newConns(nil, conns)
	m := &pollMonitor{
		w: w, log: opts.Logger, watch: watch, table: table, interval: opts.PollInterval, prev: prev,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go m.run()
	return m, nil
}

func (m *pollMonitor) run() {
	defer close(m.done)
	pollLoop(m.stop, m.interval, m.poll, m.log, "poll", "listings", m.w.fail)
}

// poll lists the sockets once and reports the new connections on watched ports.
func (m *pollMonitor) poll() error {
	conns, err := m.table.list()
	if err != nil {
		return err
	}
	fresh, seen := newConns(m.prev, conns)
	m.prev = seen
	for _, c := range fresh {
		dir, port := direction(c, conns)
		refs := m.watch[portDir{port: port, direction: dir}]
		if len(refs) == 0 {
			continue
		}
		m.w.emit(connEvents(refs, ModePoll, ModeMonitor, dir, c.local, c.remote, m.owner(c.pid)))
	}
	return nil
}

// newConns returns the established connections of conns that prev does not have, in
// order, and the set of all of them, for the next listing.
func newConns(prev map[connKey]bool, conns []tableConn) (fresh []tableConn, seen map[connKey]bool) {
	seen = make(map[connKey]bool, len(prev))
	for _, c := range conns {
		if c.listening {
			continue
		}
		k := connKey{local: c.local, remote: c.remote}
		if !prev[k] && !seen[k] {
			fresh = append(fresh, c)
		}
		seen[k] = true
	}
	return fresh, seen
}

// direction tells an accepted connection from one made from here, as sockdiag does: a
// connection whose local port has a listener (on its address or on every address) was
// accepted, and its watched port is the local one; any other was made from here, and
// its watched port is the remote one.
func direction(c tableConn, conns []tableConn) (string, uint16) {
	for _, l := range conns {
		if !l.listening || l.local.Port() != c.local.Port() {
			continue
		}
		if a := l.local.Addr(); !a.IsValid() || a.IsUnspecified() || a.Unmap() == c.local.Addr().Unmap() {
			return DirectionInbound, c.local.Port()
		}
	}
	return DirectionOutbound, c.remote.Port()
}

// owner is the process part of a connection's event: the pid and executable where the
// table names them. The rest (parent, user, command line) is not read off Linux and is
// listed in Missing.
func (m *pollMonitor) owner(pid int32) chain.Event {
	if pid == 0 {
		return chain.Event{Missing: []string{"pid", proc.FieldPPID, proc.FieldExe, proc.FieldCmdline, proc.FieldUID, "user"}}
	}
	ev := chain.Event{PID: pid, Exe: m.table.exe(pid), Missing: []string{proc.FieldPPID}}
	if ev.Exe == "" {
		ev.Missing = append(ev.Missing, proc.FieldExe)
	}
	ev.Missing = append(ev.Missing, proc.FieldCmdline, proc.FieldUID, "user")
	return ev
}

func (m *pollMonitor) mode() string { return ModePoll }

func (m *pollMonitor) degraded() string {
	return fmt.Sprintf("poll: the TCP table is polled every %v, so a connection that opens and closes between two polls is missed; %s", m.interval, m.table.limits())
}

// kernelLost is 0: a poll loses nothing it can count (see degraded).
func (m *pollMonitor) kernelLost() uint64 { return 0 }

func (m *pollMonitor) close() error {
	close(m.stop)
	<-m.done
	return nil
}
