package netwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/proto/chain"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -cc clang -type event -type watch_key -type task_info netwatch bpf/netwatch.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror

// Directions as the BPF program codes them.
const (
	bpfInbound  = 1
	bpfOutbound = 2
)

// tracefsDir is where the tracepoint's id is read; it is mounted there if no tracefs
// is mounted at all.
const tracefsDir = "/sys/kernel/tracing"

// ebpfMonitor reports connections from the tracepoint sock/inet_sock_set_state. The
// kernel filters by watched (port, direction) and hands matching connections to a
// ring buffer; the reader goroutine adds the owning process and queues events.
type ebpfMonitor struct {
	w     *netWatcher
	log   *slog.Logger
	watch watchSet
	objs  netwatchObjects
	tp    link.Link
	rd    *ringbuf.Reader
	diag  *diagConn // reader goroutine only
	own   *owners   // reader goroutine only
	done  chan struct{}
}

func newEBPFMonitor(watch watchSet, opts Options, w *netWatcher) (_ *ebpfMonitor, err error) {
	tracefs, err := ensureTracefs()
	if err != nil {
		return nil, err
	}
	if err := checkTracepointFormat(filepath.Join(tracefs, tracepointFormat)); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lifting the memlock limit: %w", err)
	}
	m := &ebpfMonitor{w: w, log: opts.Logger, watch: watch, own: newOwners(), done: make(chan struct{})}
	if err := loadNetwatchObjects(&m.objs, nil); err != nil {
		return nil, fmt.Errorf("loading eBPF objects: %w", err)
	}
	defer func() {
		if err != nil {
			m.release()
		}
	}()
	for k := range watch {
		key := netwatchWatchKey{Port: k.port, Direction: bpfInbound}
		if k.direction == DirectionOutbound {
			key.Direction = bpfOutbound
		}
		if err := m.objs.Watched.Put(key, uint8(1)); err != nil {
			return nil, fmt.Errorf("adding port %d/%s to the eBPF filter: %w", k.port, k.direction, err)
		}
	}
	if m.diag, err = openDiag(); err != nil {
		return nil, err
	}
	if m.rd, err = ringbuf.NewReader(m.objs.Events); err != nil {
		return nil, fmt.Errorf("opening eBPF ring buffer: %w", err)
	}
	if m.tp, err = link.Tracepoint("sock", "inet_sock_set_state", m.objs.InetSockSetState, nil); err != nil {
		return nil, fmt.Errorf("attaching to tracepoint sock/inet_sock_set_state: %w", err)
	}
	go m.read()
	return m, nil
}

// ensureTracefs returns where tracefs is, mounting it at tracefsDir unless a tracefs (or
// a debugfs holding one) is mounted at one of the usual places: the tracepoint is
// attached by its id, which only tracefs tells.
func ensureTracefs() (string, error) {
	for _, p := range []struct {
		dir   string
		magic int64
	}{{tracefsDir, unix.TRACEFS_MAGIC}, {"/sys/kernel/debug/tracing", unix.TRACEFS_MAGIC}, {"/sys/kernel/debug/tracing", unix.DEBUGFS_MAGIC}} {
		var st unix.Statfs_t
		if unix.Statfs(p.dir, &st) == nil && st.Type == p.magic {
			return p.dir, nil
		}
	}
	if err := unix.Mount("tracefs", tracefsDir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", fmt.Errorf("mounting tracefs at %s: %w", tracefsDir, err)
	}
	return tracefsDir, nil
}

// read turns ring buffer records into events until the reader is closed.
func (m *ebpfMonitor) read() {
	defer close(m.done)
	var rec ringbuf.Record
	for {
		if err := m.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			m.w.fail(fmt.Errorf("reading eBPF ring buffer: %w", err))
			return
		}
		var e netwatchEvent
		if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &e); err != nil {
			m.log.Error("decoding eBPF network event", "bytes", len(rec.RawSample), "err", err)
			continue
		}
		m.w.emit(m.events(&e))
	}
}

// events turns one kernel record into an event per rule watching its port.
func (m *ebpfMonitor) events(e *netwatchEvent) []chain.Event {
	local, remote := netip.AddrPortFrom(addr(e.Family, e.Saddr), e.Sport), netip.AddrPortFrom(addr(e.Family, e.Daddr), e.Dport)
	var (
		refs      []ruleRef
		direction string
		ow        owner
	)
	if e.Direction == bpfOutbound {
		direction = DirectionOutbound
		refs = m.watch[portDir{port: remote.Port(), direction: direction}]
		ow = m.outboundOwner(e, local, remote)
	} else {
		direction = DirectionInbound
		refs = m.watch[portDir{port: local.Port(), direction: direction}]
		ow = m.inboundOwner(e, local)
	}
	if len(refs) == 0 {
		return nil
	}
	var ev chain.Event
	m.own.fill(&ev, ow)
	return connEvents(refs, ModeEBPF, ModeMonitor, direction, local, remote, ev)
}

// addr reads an address the BPF program copied (IPv4 in the first 4 bytes).
func addr(family uint16, b [16]uint8) netip.Addr {
	if family == afInet {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// outboundOwner is the task the kernel saw call connect(), or, if the kernel missed it,
// the holder of the connection's socket.
func (m *ebpfMonitor) outboundOwner(e *netwatchEvent, local, remote netip.AddrPort) owner {
	if e.HasTask != 0 {
		return owner{pid: int32(e.Task.Pid), uid: int64(e.Task.Uid), haveUID: true, comm: unix.ByteSliceToString(e.Task.Comm[:])}
	}
	socks, err := m.diag.dump(uint8(e.Family), 1<<tcpEstablished)
	if err != nil {
		m.log.Warn("listing sockets to find a connection's owner", "err", err)
		return owner{}
	}
	for _, s := range socks {
		if s.local == local && s.remote == remote {
			return m.own.bySocket(s.inode, s.uid)
		}
	}
	return owner{}
}

// inboundOwner is the holder of the socket listening on the connection's local end.
func (m *ebpfMonitor) inboundOwner(e *netwatchEvent, local netip.AddrPort) owner {
	socks, err := m.diag.dump(uint8(e.Family), 1<<tcpListen)
	if err != nil {
		m.log.Warn("listing listening sockets to find a connection's owner", "err", err)
		return owner{}
	}
	if l, ok := listenerFor(socks, uint8(e.Family), local); ok {
		return m.own.bySocket(l.inode, l.uid)
	}
	return owner{}
}

func (m *ebpfMonitor) mode() string     { return ModeEBPF }
func (m *ebpfMonitor) degraded() string { return "" }

// kernelLost sums the per-CPU count of failed ring buffer reservations.
func (m *ebpfMonitor) kernelLost() uint64 {
	var perCPU []uint64
	if err := m.objs.Lost.Lookup(uint32(0), &perCPU); err != nil {
		m.log.Warn("reading the eBPF loss counter", "err", err)
		return 0
	}
	var n uint64
	for _, c := range perCPU {
		n += c
	}
	return n
}

// close detaches the program first, so that nothing is reported after it returns.
func (m *ebpfMonitor) close() error {
	var errs []error
	if err := m.tp.Close(); err != nil {
		errs = append(errs, fmt.Errorf("detaching tracepoint: %w", err))
	}
	if err := m.rd.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing ring buffer reader: %w", err))
	}
	<-m.done
	m.tp, m.rd = nil, nil
	return errors.Join(append(errs, m.release())...)
}

// release frees what a partly built monitor holds.
func (m *ebpfMonitor) release() error {
	var errs []error
	if m.tp != nil {
		errs = append(errs, m.tp.Close())
	}
	if m.rd != nil {
		errs = append(errs, m.rd.Close())
	}
	if m.diag != nil {
		errs = append(errs, m.diag.close())
	}
	errs = append(errs, m.objs.Close())
	return errors.Join(errs...)
}
