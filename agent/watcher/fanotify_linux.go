//go:build linux

package watcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/agent/proc"
)

// lookupTimeout bounds how long an opener waits on our /proc snapshot of it: reading
// /proc/<pid>/cmdline can stall on the target's memory map lock. The open is allowed
// when it expires, and the event is enriched later, best effort.
const lookupTimeout = 100 * time.Millisecond

// Event masks. The notification events are the same in both modes; the full mode adds
// FAN_OPEN_PERM and FAN_OPEN_EXEC_PERM (the opener waits for our answer), the degraded
// one FAN_OPEN and FAN_OPEN_EXEC.
const (
	fanNotify   = unix.FAN_ACCESS | unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE | unix.FAN_CLOSE_NOWRITE
	fanOpenPerm = unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM
	fanOpen     = unix.FAN_OPEN | unix.FAN_OPEN_EXEC
	fanPermMask = unix.FAN_OPEN_PERM | unix.FAN_ACCESS_PERM | unix.FAN_OPEN_EXEC_PERM
)

// mark is what is marked now for one target.
type mark struct {
	real  string
	isDir bool
	file  fileID
	perm  bool // marked with FAN_OPEN_PERM
}

// ruleIndex maps what the kernel reports to rules. It is rebuilt, never changed, so
// that the readers can use the current one without locks.
type ruleIndex struct {
	byFile map[fileID][]ruleRef // marked files, and files marked before a replacement
	byDir  map[fileID][]ruleRef // marked directories, subdirectories of watched trees included
	m      *matcher
}

// fanWatcher is the fanotify FileWatcher. Three goroutines share it:
//
//   - the reader, started by the constructor, reads the fanotify queue and answers
//     permission events. It must never open a file that could be watched (it would
//     wait on itself), never log (a blocked log sink would block every opener of a
//     watched file) and never block on anything but the kernel: it snapshots openers
//     from /proc, answers, and hands compact records to Run without waiting, counting
//     what does not fit.
//   - the entry reader (entries_linux.go) reads the second, name-reporting group:
//     creations, removals, renames and attribute changes in watched directories. It
//     matches them to rules and snapshots the actor while it may still be alive.
//   - Run's goroutine coalesces, matches rules, resolves user names (which reads
//     /etc/passwd, whose permission event the reader answers at once for our own pid),
//     re-marks replaced paths, marks new subdirectories of watched trees and sends
//     events.
type fanWatcher struct {
	opts    Options
	targets []*target
	users   *proc.Users
	perm    bool   // the group is FAN_CLASS_CONTENT with permission events
	why     string // why permission events are off, if they are

	fd, wake int // fanotify group; eventfd that stops the readers
	fdMu     sync.RWMutex
	closed   bool // under fdMu: fd, wake, entries and the mount descriptors are closed

	entries *entryGroup // nil if the kernel refused a name-reporting group
	noNames string      // why entries is nil

	records    chan rawEvent
	lossSignal chan struct{}
	readerDone chan struct{}
	readerErr  error // set before readerDone is closed
	stopping   atomic.Bool

	// Counted by the readers, reported by Run.
	overflows, dropped, respErrs, lookupTimeouts atomic.Uint64
	lastRespErr                                  atomic.Value // error
	lost                                         atomic.Uint64
	reportedOverflows, reportedDropped           uint64
	reportedRespErrs, reportedTimeouts           uint64

	// Owned by the constructor, then by Run's goroutine.
	marks    map[string]mark      // by target path
	waiting  map[string]error     // target paths not marked yet, and why
	retired  map[fileID][]ruleRef // files marked before their path was replaced: still marked
	treeDirs map[fileID][]ruleRef // watched directories and the directories under them

	// index is rebuilt by the owner of the marks and read by every goroutine.
	index atomic.Pointer[ruleIndex]

	degradedMu sync.Mutex
	noPerm     map[string]error // paths marked without permission events
	noEntries  map[string]error // paths the name-reporting group could not mark

	started   atomic.Bool
	closeOnce sync.Once
}

func newFanotifyWatcher(targets []*target, opts Options) (FileWatcher, error) {
	w := &fanWatcher{
		opts:       opts,
		targets:    targets,
		users:      proc.NewUsers(0),
		perm:       true,
		records:    make(chan rawEvent, opts.Buffer),
		lossSignal: make(chan struct{}, 1),
		readerDone: make(chan struct{}),
		marks:      map[string]mark{},
		waiting:    map[string]error{},
		retired:    map[fileID][]ruleRef{},
		treeDirs:   map[fileID][]ruleRef{},
		noPerm:     map[string]error{},
		noEntries:  map[string]error{},
	}
	evFlags := uint(unix.O_RDONLY | unix.O_LARGEFILE | unix.O_CLOEXEC)
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, evFlags)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
		w.perm = false
		w.why = fmt.Sprintf("fanotify: the kernel refused permission events (%v), so a process that exits before its event is read may lack exe, cmdline and user", err)
		fd, err = unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, evFlags)
	}
	if err != nil {
		return nil, fmt.Errorf("initialising fanotify: %w", err)
	}
	w.fd = fd
	w.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating eventfd: %w", err)
	}
	w.entries, err = newEntryGroup()
	if err != nil {
		w.noNames = fmt.Sprintf("fanotify: no name-reporting group (%v), so creations, removals, renames and attribute changes are not seen", err)
		opts.Logger.Warn("fanotify without directory entry events", "reason", w.noNames)
	}
	// Start answering before the first mark: from then on openers wait for us.
	go w.read()
	if w.entries != nil {
		go w.readEntries()
	}
	if err := w.rescan(true); err != nil {
		w.Close()
		return nil, err
	}
	if w.why != "" {
		opts.Logger.Warn("fanotify without permission events", "reason", w.why)
	}
	return w, nil
}

// Mode implements FileWatcher.
func (w *fanWatcher) Mode() string { return ModeFanotify }

// Degraded implements FileWatcher.
func (w *fanWatcher) Degraded() string {
	w.degradedMu.Lock()
	defer w.degradedMu.Unlock()
	parts := []string{}
	if w.why != "" {
		parts = append(parts, w.why)
	}
	if w.noNames != "" {
		parts = append(parts, w.noNames)
	}
	for _, p := range slices.Sorted(maps.Keys(w.noPerm)) {
		parts = append(parts, fmt.Sprintf("fanotify: no permission events on %s (%v), so a process that exits at once may lack exe, cmdline and user", p, w.noPerm[p]))
	}
	for _, p := range slices.Sorted(maps.Keys(w.noEntries)) {
		parts = append(parts, fmt.Sprintf("fanotify: no entry events on %s (%v), so creations, removals, renames and attribute changes there are not seen", p, w.noEntries[p]))
	}
	return strings.Join(parts, "; ")
}

// Lost implements FileWatcher.
func (w *fanWatcher) Lost() uint64 { return w.lost.Load() }

// Close implements FileWatcher. It stops the reader and closes the group, which allows
// every open still waiting for an answer.
func (w *fanWatcher) Close() error {
	w.closeOnce.Do(func() {
		w.stopping.Store(true)
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(w.wake, one[:])
		<-w.readerDone
		if w.entries != nil {
			<-w.entries.done
		}
		w.fdMu.Lock()
		w.closed = true
		unix.Close(w.fd)
		unix.Close(w.wake)
		if w.entries != nil {
			w.entries.close()
		}
		w.fdMu.Unlock()
	})
	return nil
}

// rescan marks the targets whose path now leads to an object other than the marked
// one (replaced by a rename, or created since), and rebuilds the rule index. At
// construction (first) an unexpected marking error is returned; later it is logged.
func (w *fanWatcher) rescan(first bool) error {
	w.fdMu.RLock()
	defer w.fdMu.RUnlock()
	if w.closed {
		return nil
	}
	changed := first
	for _, t := range w.targets {
		r, err := resolve(t.path)
		if err != nil {
			if _, was := w.waiting[t.path]; !was {
				w.opts.Logger.Warn("watched path is missing; will watch it when it appears", "path", t.path, "err", err)
			}
			w.waiting[t.path] = err
			if old, had := w.marks[t.path]; had {
				if !old.isDir {
					w.retired[old.file] = appendRules(w.retired[old.file], t.rules)
				}
				delete(w.marks, t.path)
				changed = true
			}
			continue
		}
		id := fileIDOf(r)
		old, had := w.marks[t.path]
		if had && old.file == id && old.real == r.real {
			continue
		}
		if had && !old.isDir {
			// The kernel keeps the old file's mark: a read through another link to it,
			// or after it was renamed away, must still name the rule.
			w.retired[old.file] = appendRules(w.retired[old.file], t.rules)
		}
		mk, err := w.mark(r, id)
		if err != nil {
			if first {
				return err
			}
			w.opts.Logger.Warn("cannot mark watched path; will retry", "path", t.path, "err", err)
			w.waiting[t.path] = err
			continue
		}
		delete(w.waiting, t.path)
		w.marks[t.path] = mk
		changed = true
		if r.isDir {
			w.markTree(r.real, t.rules, nil)
		} else {
			w.markEntries(r)
		}
		w.opts.Logger.Debug("watching path", "path", t.path, "real", r.real, "dir", r.isDir, "perm", mk.perm, "mode", ModeFanotify)
	}
	if changed {
		w.reindex()
	}
	return nil
}

// mark adds the fanotify mark for one resolved target. Permission events are refused
// on some file systems (EINVAL) or by security modules (EPERM, EACCES): the path is
// then marked for FAN_OPEN notifications and listed in Degraded.
func (w *fanWatcher) mark(r resolved, id fileID) (mark, error) {
	mask := uint64(fanNotify)
	if r.isDir {
		mask |= unix.FAN_EVENT_ON_CHILD
	}
	mk := mark{real: r.real, isDir: r.isDir, file: id}
	if w.perm {
		err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD, mask|fanOpenPerm, unix.AT_FDCWD, r.real)
		if err == nil {
			mk.perm = true
			return mk, nil
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
			return mk, &MarkError{Path: r.real, Err: err}
		}
		w.degradedMu.Lock()
		w.noPerm[r.real] = err
		w.degradedMu.Unlock()
		w.opts.Logger.Warn("permission events refused; watching without them", "path", r.real, "err", err)
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD, mask|fanOpen, unix.AT_FDCWD, r.real); err != nil {
		return mk, &MarkError{Path: r.real, Err: err}
	}
	return mk, nil
}

// reindex publishes a new ruleIndex built from the marks.
func (w *fanWatcher) reindex() {
	idx := &ruleIndex{byFile: map[fileID][]ruleRef{}, byDir: map[fileID][]ruleRef{}, m: newMatcher()}
	for id, rules := range w.retired {
		idx.byFile[id] = rules
	}
	for id, rules := range w.treeDirs {
		idx.byDir[id] = rules
	}
	for _, t := range w.targets {
		mk, ok := w.marks[t.path]
		if !ok {
			continue
		}
		if mk.isDir {
			idx.byDir[mk.file] = appendRules(idx.byDir[mk.file], t.rules)
		} else {
			idx.byFile[mk.file] = appendRules(idx.byFile[mk.file], t.rules)
		}
		idx.m.add(mk.real, mk.isDir, t.rules)
	}
	w.index.Store(idx)
}

func fileIDOf(r resolved) fileID {
	if st, ok := r.info.Sys().(*syscall.Stat_t); ok {
		return fileID{dev: uint64(st.Dev), ino: st.Ino}
	}
	return fileID{}
}

// read is the reader goroutine: see fanWatcher.
func (w *fanWatcher) read() {
	defer close(w.readerDone)
	// The kernel opens a descriptor for every event it copies out; were that to fail
	// (EMFILE) on a permission event, it would deny the open. A small buffer bounds
	// the descriptors one read creates (~170).
	buf := make([]byte, 4096)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	lk := &lookuper{timer: time.NewTimer(time.Hour)}
	lk.timer.Stop()
	for !w.stopping.Load() {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			w.readerErr = fmt.Errorf("polling fanotify: %w", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
			w.readerErr = fmt.Errorf("polling fanotify: revents %#x", fds[0].Revents)
			return
		}
		for !w.stopping.Load() {
			n, err := unix.Read(w.fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				w.readerErr = fmt.Errorf("reading fanotify events: %w", err)
				return
			}
			if err := w.handle(buf[:n], time.Now(), lk); err != nil {
				w.readerErr = err
				return
			}
		}
	}
}

// Offsets in struct fanotify_event_metadata.
const (
	metaLen      = 24
	offEventLen  = 0
	offVers      = 4
	offMetaLen   = 6
	offMask      = 8
	offFd        = 16
	offPid       = 20
	responseSize = 8
)

// handle processes one read(2) worth of events. A malformed buffer is fatal: the
// events after it could not be answered, and closing the group (which Run does when
// the reader fails) is what allows them.
func (w *fanWatcher) handle(buf []byte, now time.Time, lk *lookuper) error {
	for off := 0; off < len(buf); {
		if len(buf)-off < metaLen {
			return fmt.Errorf("reading fanotify events: %d stray bytes", len(buf)-off)
		}
		b := buf[off:]
		evLen := int(binary.NativeEndian.Uint32(b[offEventLen:]))
		if b[offVers] != unix.FANOTIFY_METADATA_VERSION {
			return fmt.Errorf("reading fanotify events: metadata version %d, want %d", b[offVers], unix.FANOTIFY_METADATA_VERSION)
		}
		if evLen < metaLen || evLen > len(b) || int(binary.NativeEndian.Uint16(b[offMetaLen:])) < metaLen {
			return fmt.Errorf("reading fanotify events: bad event length %d", evLen)
		}
		off += evLen
		w.handleOne(binary.NativeEndian.Uint64(b[offMask:]), int(int32(binary.NativeEndian.Uint32(b[offFd:]))),
			int32(binary.NativeEndian.Uint32(b[offPid:])), now, lk)
	}
	return nil
}

func (w *fanWatcher) handleOne(mask uint64, fd int, pid int32, now time.Time, lk *lookuper) {
	if mask&unix.FAN_Q_OVERFLOW != 0 {
		w.overflows.Add(1)
		w.signalLoss()
	}
	if fd < 0 {
		return
	}
	defer unix.Close(fd)
	perm := mask&fanPermMask != 0
	if int(pid) == w.opts.ExcludePID {
		if perm {
			w.respond(fd)
		}
		return
	}
	ev := rawEvent{acc: accessOf(mask), pid: pid, at: now, path: fdPath(fd)}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		ev.file = fileID{dev: uint64(st.Dev), ino: st.Ino}
	}
	if mask&(fanOpenPerm|fanOpen) != 0 {
		ev.snap = lk.lookup(pid, &w.lookupTimeouts)
	}
	if perm {
		w.respond(fd)
	}
	if ev.acc == 0 {
		return
	}
	select {
	case w.records <- ev:
	default:
		w.dropped.Add(1)
		w.signalLoss()
	}
}

func (w *fanWatcher) respond(fd int) {
	var b [responseSize]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(int32(fd)))
	binary.NativeEndian.PutUint32(b[4:], unix.FAN_ALLOW)
	if _, err := unix.Write(w.fd, b[:]); err != nil {
		w.lastRespErr.Store(err)
		w.respErrs.Add(1)
		w.signalLoss()
	}
}

func (w *fanWatcher) signalLoss() {
	select {
	case w.lossSignal <- struct{}{}:
	default:
	}
}

func accessOf(mask uint64) access {
	var a access
	if mask&(unix.FAN_OPEN|unix.FAN_OPEN_PERM) != 0 {
		a |= accOpen
	}
	if mask&(unix.FAN_OPEN_EXEC|unix.FAN_OPEN_EXEC_PERM) != 0 {
		a |= accExec
	}
	if mask&unix.FAN_ACCESS != 0 {
		a |= accRead
	}
	if mask&unix.FAN_MODIFY != 0 {
		a |= accWrite
	}
	if mask&unix.FAN_CLOSE_WRITE != 0 {
		a |= accCloseWrite
	}
	if mask&unix.FAN_CLOSE_NOWRITE != 0 {
		a |= accCloseNoWrite
	}
	return a
}

// fdPath is the path the event's file was opened by, from /proc/self/fd; it ends in
// " (deleted)" if the file has since been unlinked.
func fdPath(fd int) string {
	var buf [unix.PathMax]byte
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf[:])
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// lookuper snapshots openers with a bounded wait. It is used by the reader alone.
type lookuper struct {
	timer *time.Timer
}

// lookup returns the /proc snapshot of pid, or nil if it took longer than
// lookupTimeout (the lookup then finishes in the background and is discarded).
func (l *lookuper) lookup(pid int32, timeouts *atomic.Uint64) *snapshot {
	ch := make(chan *snapshot, 1)
	go func() {
		info, err := proc.Lookup(pid)
		ch <- &snapshot{info: info, err: err}
	}()
	l.timer.Reset(lookupTimeout)
	select {
	case s := <-ch:
		l.timer.Stop()
		return s
	case <-l.timer.C:
		timeouts.Add(1)
		return nil
	}
}

func (w *fanWatcher) isClosed() bool {
	w.fdMu.RLock()
	defer w.fdMu.RUnlock()
	return w.closed
}
