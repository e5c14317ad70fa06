//go:build linux

package procwatch

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel,bpfeb -cc clang -type event execBPF bpf/exec.c -- -O2 -g -Wall -Werror -I/usr/include

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/agent/proc"
)

// Flags in execBPFEvent.Flags, as bpf/exec.c sets them.
const (
	flagArgsTruncated      = 1
	flagArgsUnreadable     = 2
	flagFilenameTruncated  = 4
	flagFilenameUnreadable = 8
	eventHeaderSize        = int(unsafe.Sizeof(execBPFEvent{}))
	commOffset             = int(unsafe.Offsetof(execBPFEvent{}.Comm))
)

// ebpfSource reads execs from the sched_process_exec raw tracepoint's ring buffer.
type ebpfSource struct {
	en   *enricher
	objs execBPFObjects
	tp   link.Link
	rd   *ringbuf.Reader

	mu       sync.Mutex // guards closed and lastLost against kernelLost after close
	closed   bool
	lastLost uint64
}

// openEBPF loads and attaches the exec program. ringSize, if not 0, replaces the ring
// buffer's size in bytes (a power of two, at least a page): tests shrink it to make
// it overflow.
func openEBPF(en *enricher, ringSize uint32) (source, error) {
	s := &ebpfSource{en: en}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones (memory
	// cgroup accounting) are left alone. Failing that is only worth mentioning if
	// the load fails too: without privilege, the load's error says more.
	memlockErr := rlimit.RemoveMemlock()
	spec, err := loadExecBPF()
	if err != nil {
		return nil, fmt.Errorf("reading the exec BPF object: %w", err)
	}
	if ringSize != 0 {
		spec.Maps["events"].MaxEntries = ringSize
	}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		if memlockErr != nil {
			err = fmt.Errorf("%w (lifting RLIMIT_MEMLOCK failed too: %v)", err, memlockErr)
		}
		return nil, fmt.Errorf("loading the exec BPF program: %w", err)
	}
	tp, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_process_exec", Program: s.objs.OnExec})
	if err != nil {
		s.objs.Close()
		return nil, fmt.Errorf("attaching to the sched_process_exec raw tracepoint: %w", err)
	}
	s.tp = tp
	s.rd, err = ringbuf.NewReader(s.objs.Events)
	if err != nil {
		tp.Close()
		s.objs.Close()
		return nil, fmt.Errorf("opening the exec ring buffer: %w", err)
	}
	return s, nil
}

func (s *ebpfSource) mode() string   { return ModeEBPF }
func (s *ebpfSource) limits() string { return "" }

func (s *ebpfSource) read(push func(*execRecord)) error {
	var rec ringbuf.Record
	for {
		if err := s.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading the exec ring buffer: %w", err)
		}
		r, want, err := parseExecEvent(rec.RawSample)
		if err != nil {
			return err
		}
		s.en.fromKernel(r, want)
		push(r)
	}
}

// parseExecEvent decodes one ring-buffer record of bpf/exec.c: the event header, the
// file name and the argument vector.
func parseExecEvent(raw []byte) (*execRecord, image, error) {
	var ev execBPFEvent
	if _, err := binary.Decode(raw, binary.NativeEndian, &ev); err != nil {
		return nil, image{}, fmt.Errorf("decoding an exec event of %d bytes: %w", len(raw), err)
	}
	data := raw[eventHeaderSize:]
	if int(ev.FilenameLen)+int(ev.ArgsLen) > len(data) {
		return nil, image{}, fmt.Errorf("decoding an exec event: file name (%d bytes) and argv (%d bytes) overrun its %d bytes", ev.FilenameLen, ev.ArgsLen, len(data))
	}
	r := &execRecord{
		pid:  int32(ev.Pid),
		ppid: int32(ev.Ppid),
		uid:  int64(ev.Uid),
		gid:  int64(ev.Gid),
		comm: cString(raw[commOffset : commOffset+len(ev.Comm)]),
		// The cgroup path is read from /proc if the process is still there.
		cgroup: "cgroup_id=" + strconv.FormatUint(ev.CgroupId, 10),
	}
	if ev.Flags&(flagFilenameTruncated|flagFilenameUnreadable) == 0 {
		r.filename = cString(data[:ev.FilenameLen])
	}
	if ev.Flags&flagArgsUnreadable != 0 || ev.ArgsLen == 0 {
		r.missing = append(r.missing, fieldCmdline)
	} else {
		r.cmdline, r.cmdlineTruncated = proc.JoinCmdline(data[ev.FilenameLen:ev.FilenameLen+ev.ArgsLen], proc.MaxCmdline)
		r.cmdlineTruncated = r.cmdlineTruncated || ev.Flags&flagArgsTruncated != 0
	}
	major, minor := ev.Dev>>20, ev.Dev&(1<<20-1)
	return r, image{dev: unix.Mkdev(major, minor), ino: ev.Ino}, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func (s *ebpfSource) kernelLost() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.lastLost, false
	}
	var perCPU []uint64
	if err := s.objs.Lost.Lookup(uint32(0), &perCPU); err == nil {
		var n uint64
		for _, c := range perCPU {
			n += c
		}
		s.lastLost = n
	}
	return s.lastLost, false
}

func (s *ebpfSource) close() error {
	err := s.rd.Close()
	s.kernelLost() // the last count, before the map goes
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return errors.Join(err, s.tp.Close(), s.objs.Close())
}
