package sigwatch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Watcher is an attached signal tracepoint for one process.
type Watcher struct {
	objs     sigObjects
	tp       link.Link
	rd       *ringbuf.Reader
	pid      int32
	previous []Signal
	bootOff  time.Duration // wall clock minus CLOCK_BOOTTIME
	mu       sync.Mutex    // serialises Forget
	closeOne sync.Once
}

// Start attaches the signal tracepoint for process pid (the agent: os.Getpid()),
// pinning the ring of kept records under pinDir (DefaultPinDir when empty; bpffs is
// mounted there if it is not yet). The records a previous agent left unread are
// returned by Previous.
func Start(pid int, pinDir string) (*Watcher, error) {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	if err := ensureBPFFS(bpffsRoot); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the pin directory %s: %w", pinDir, err)
	}
	if err := ensureBPFFS(pinDir); err != nil {
		return nil, err
	}
	_ = rlimit.RemoveMemlock() // only needed before Linux 5.11; harmless after
	spec, err := loadSig()
	if err != nil {
		return nil, fmt.Errorf("loading the signal program: %w", err)
	}
	if err := spec.Variables["target_tgid"].Set(uint32(pid)); err != nil {
		return nil, fmt.Errorf("setting the agent pid: %w", err)
	}
	w := &Watcher{pid: int32(pid), bootOff: bootOffset()}
	if err := spec.LoadAndAssign(&w.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}); err != nil {
		return nil, fmt.Errorf("loading the signal program (needs CAP_BPF and CAP_PERFMON): %w", err)
	}
	w.previous = w.kept(func(r sigRecord) bool { return int32(r.TargetPid) != w.pid })
	w.tp, err = link.Tracepoint("signal", "signal_generate", w.objs.OnSignalGenerate, nil)
	if err != nil {
		w.objs.Close()
		return nil, fmt.Errorf("attaching to signal:signal_generate (needs CAP_PERFMON): %w", err)
	}
	w.rd, err = ringbuf.NewReader(w.objs.Signals)
	if err != nil {
		w.tp.Close()
		w.objs.Close()
		return nil, fmt.Errorf("opening the signal ring buffer: %w", err)
	}
	return w, nil
}

// Previous returns the signals aimed at earlier agent processes that those agents did
// not record (they were killed, or stopped and never resumed), oldest first. Call
// Forget once they are recorded.
func (w *Watcher) Previous() []Signal { return w.previous }

// Run sends each signal aimed at the agent to fn until ctx ends; then it reads what is
// already in the ring buffer (the SIGTERM that ended ctx, say) for up to drain before
// returning.
func (w *Watcher) Run(ctx context.Context, drain time.Duration, fn func(Signal)) error {
	// The reader cannot be woken from another goroutine (SetDeadline waits for a
	// blocked read), so reads wake up every poll to look at ctx.
	const poll = 250 * time.Millisecond
	var (
		rec      ringbuf.Record
		draining bool
	)
	for {
		switch {
		case draining:
		case ctx.Err() != nil:
			draining = true
			w.rd.SetDeadline(time.Now().Add(drain))
		default:
			w.rd.SetDeadline(time.Now().Add(poll))
		}
		err := w.rd.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if draining {
				return nil
			}
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		case err != nil:
			return fmt.Errorf("reading the signal ring buffer: %w", err)
		}
		var r sigRecord
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &r); err != nil {
			return fmt.Errorf("decoding a signal record: %w", err)
		}
		fn(w.signal(r))
	}
}

// Forget removes the kept records up to and including s, once they are recorded, so
// that the next agent does not record them again.
func (w *Watcher) Forget(s Signal) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var (
		key   uint32
		value sigRecord
	)
	it := w.objs.TripwireSigKept.Iterate()
	var stale []uint32
	for it.Next(&key, &value) {
		if value.BootNs != 0 && value.BootNs <= s.bootNs {
			stale = append(stale, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading kept signals: %w", err)
	}
	for _, k := range stale {
		if err := w.objs.TripwireSigKept.Put(k, sigRecord{}); err != nil {
			return fmt.Errorf("forgetting kept signal %d: %w", k, err)
		}
	}
	return nil
}

// Lost is the number of signal records the ring buffer had no room for.
func (w *Watcher) Lost() uint64 {
	var n uint64
	if err := w.objs.Lost.Lookup(uint32(0), &n); err != nil {
		return 0
	}
	return n
}

// Close detaches the program. The pinned ring stays for the next agent.
func (w *Watcher) Close() error {
	w.closeOne.Do(func() {
		w.rd.Close()
		w.tp.Close()
		w.objs.Close()
	})
	return nil
}

func (w *Watcher) kept(keep func(sigRecord) bool) []Signal {
	var (
		key   uint32
		value sigRecord
		out   []Signal
	)
	it := w.objs.TripwireSigKept.Iterate()
	for it.Next(&key, &value) {
		if value.BootNs != 0 && keep(value) {
			out = append(out, w.signal(value))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].bootNs < out[j].bootNs })
	return out
}

func (w *Watcher) signal(r sigRecord) Signal {
	comm := make([]byte, 0, len(r.SenderComm))
	for _, c := range r.SenderComm {
		if c == 0 {
			break
		}
		comm = append(comm, byte(c))
	}
	return Signal{
		At:  time.Unix(0, int64(r.BootNs)).Add(w.bootOff).UTC(),
		Sig: int(r.Sig), Name: signalName(int(r.Sig)), Code: int(r.Code),
		TargetPID: int32(r.TargetPid), SenderPID: int32(r.SenderPid), SenderUID: int64(r.SenderUid),
		SenderComm: string(comm), bootNs: r.BootNs,
	}
}

// bootOffset is the wall clock minus CLOCK_BOOTTIME, to date kernel timestamps.
func bootOffset() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

// bpffsRoot is where bpffs is mounted by convention.
const bpffsRoot = "/sys/fs/bpf"

// ensureBPFFS checks that dir is on bpffs, and mounts bpffs there if dir is bpffsRoot.
func ensureBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("checking %s: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if dir != bpffsRoot {
		return fmt.Errorf("%s is not on a bpffs mount: pinned maps cannot live there", dir)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs at %s (needs CAP_SYS_ADMIN, or mount it at boot): %w", dir, err)
	}
	return nil
}

// Fatal says the signal stops the agent without letting it record anything itself.
func (s Signal) Fatal() bool { return s.Sig == int(unix.SIGKILL) || s.Sig == int(unix.SIGSTOP) }

func signalName(sig int) string {
	if n := unix.SignalName(unix.Signal(sig)); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", sig)
}
