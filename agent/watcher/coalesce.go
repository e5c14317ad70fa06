package watcher

import (
	"time"

	"github.com/tripwire-project/tripwire/agent/proc"
)

// access is what one kernel notification says happened, in the order it happened.
type access uint8

const (
	accOpen access = 1 << iota
	accRead
	accWrite
	accCloseWrite
	accCloseNoWrite
	accExec

	accClose = accCloseWrite | accCloseNoWrite
)

// fileID names a file by device and inode, so that a hard link or a rename does not
// hide it.
type fileID struct{ dev, ino uint64 }

// sessionKey names one process's use of one file: an open followed by reads and writes
// until the last close.
type sessionKey struct {
	pid  int32
	file fileID
}

// snapshot is the opener's identity, read while it was blocked in open(2).
type snapshot struct {
	info proc.Info
	err  error
}

// exe is the snapshot's executable, "" when there is none.
func (s *snapshot) exe() string {
	if s == nil {
		return ""
	}
	return s.info.Exe
}

// rawEvent is one kernel notification as a reader hands it to Run: an access (acc set)
// from the permission group, or a directory entry change (entry set) from the
// name-reporting group.
type rawEvent struct {
	acc   access
	pid   int32
	file  fileID
	path  string
	at    time.Time
	snap  *snapshot // set on opens, execs and entry changes
	entry *entryChange
}

// entryChange is a create, remove, rename or attribute change seen in a watched
// directory, already matched to its rules by the reader.
type entryChange struct {
	op    string
	from  string // OpRename: the old path (path is the new one)
	isDir bool
	rules []ruleRef
}

// emission is one coalesced event, before rule matching and enrichment.
type emission struct {
	key   sessionKey
	path  string
	op    string
	count uint64
	snap  *snapshot
	from  string    // OpRename: the old path
	rules []ruleRef // already matched (entry changes), else nil
}

type pendingOp struct {
	count   uint64
	first   time.Time
	emitted bool
}

func (p *pendingOp) due(window time.Duration) (time.Time, bool) {
	if p.count == 0 || p.emitted {
		return time.Time{}, false
	}
	return p.first.Add(window), true
}

type session struct {
	path         string
	snap         *snapshot
	opens        int
	openedAt     time.Time
	lastSeen     time.Time
	read, write  pendingOp
	openReported bool
	exec         bool
}

// coalescer turns a stream of notifications into one event per operation per session:
// the first read (write) of a process on a file is sent when the file is closed or
// window after it, whichever comes first, with the number of read (write)
// notifications seen until then; later ones in the same session are counted and not
// sent. A session in which nothing is read or written is reported as OpOpen (or
// OpCloseWrite when it was opened for writing) when closed or openGrace after the
// open. A session that executes the file is reported once, as OpExec, at once: what
// follows in it (the loader's reads, the mapping held until exit) is the exec itself.
// A coalescer is used by one goroutine.
type coalescer struct {
	window, openGrace time.Duration
	sessions          map[sessionKey]*session
}

func newCoalescer(window time.Duration) *coalescer {
	return &coalescer{window: window, openGrace: 2 * window, sessions: map[sessionKey]*session{}}
}

// add folds ev into its session, calling emit for what is due because of it.
func (c *coalescer) add(ev rawEvent, emit func(emission)) {
	k := sessionKey{pid: ev.pid, file: ev.file}
	s := c.sessions[k]
	if s == nil {
		s = &session{openedAt: ev.at}
		c.sessions[k] = s
	}
	s.lastSeen = ev.at
	if ev.path != "" {
		s.path = ev.path
	}
	if ev.snap != nil {
		s.snap = ev.snap // the newest: an exec in between changes exe and cmdline
	}
	if ev.acc&accOpen != 0 {
		s.opens++
	}
	if ev.acc&accExec != 0 && !s.exec {
		s.exec, s.openReported = true, true
		emit(emission{key: k, path: s.path, op: OpExec, count: 1, snap: s.snap})
	}
	if s.exec {
		// Reads by the loader, the close at exit: all part of the exec reported.
		if ev.acc&accClose != 0 {
			if s.opens--; s.opens <= 0 {
				delete(c.sessions, k)
			}
		}
		return
	}
	if ev.acc&accRead != 0 {
		bump(&s.read, ev.at)
	}
	if ev.acc&accWrite != 0 {
		bump(&s.write, ev.at)
	}
	if ev.acc&accClose != 0 {
		c.flush(k, s, emit)
		if s.read.count == 0 && s.write.count == 0 && !s.openReported {
			op := OpOpen
			if ev.acc&accCloseWrite != 0 {
				op = OpCloseWrite
			}
			s.openReported = true
			emit(emission{key: k, path: s.path, op: op, count: 1, snap: s.snap})
		}
		// A close for an open we did not see (opened before the watch, or the open
		// was lost) ends the session too.
		if s.opens--; s.opens <= 0 {
			delete(c.sessions, k)
		}
	}
}

func bump(p *pendingOp, at time.Time) {
	if p.count == 0 {
		p.first = at
	}
	p.count++
}

// flush emits the session's pending read and write.
func (c *coalescer) flush(k sessionKey, s *session, emit func(emission)) {
	for _, x := range []struct {
		p  *pendingOp
		op string
	}{{&s.read, OpRead}, {&s.write, OpWrite}} {
		if x.p.count > 0 && !x.p.emitted {
			x.p.emitted = true
			emit(emission{key: k, path: s.path, op: x.op, count: x.p.count, snap: s.snap})
		}
	}
}

// due emits everything whose time has come by now.
func (c *coalescer) due(now time.Time, emit func(emission)) {
	for k, s := range c.sessions {
		for _, x := range []struct {
			p  *pendingOp
			op string
		}{{&s.read, OpRead}, {&s.write, OpWrite}} {
			if at, ok := x.p.due(c.window); ok && !now.Before(at) {
				x.p.emitted = true
				emit(emission{key: k, path: s.path, op: x.op, count: x.p.count, snap: s.snap})
			}
		}
		if at, ok := c.openDue(s); ok && !now.Before(at) {
			s.openReported = true
			emit(emission{key: k, path: s.path, op: OpOpen, count: 1, snap: s.snap})
		}
	}
}

func (c *coalescer) openDue(s *session) (time.Time, bool) {
	if s.opens <= 0 || s.openReported || s.read.count > 0 || s.write.count > 0 {
		return time.Time{}, false
	}
	return s.openedAt.Add(c.openGrace), true
}

// next is when due next has something to emit.
func (c *coalescer) next() (time.Time, bool) {
	var best time.Time
	found := false
	consider := func(at time.Time, ok bool) {
		if ok && (!found || at.Before(best)) {
			best, found = at, true
		}
	}
	for _, s := range c.sessions {
		consider(s.read.due(c.window))
		consider(s.write.due(c.window))
		consider(c.openDue(s))
	}
	return best, found
}

// reap ends sessions idle since before cutoff whose process is gone (their close was
// lost), emitting what they still held.
func (c *coalescer) reap(cutoff time.Time, alive func(pid int32) bool, emit func(emission)) {
	for k, s := range c.sessions {
		if s.lastSeen.Before(cutoff) && !alive(k.pid) {
			c.flush(k, s, emit)
			delete(c.sessions, k)
		}
	}
}

// flushAll emits every pending read and write, at shutdown.
func (c *coalescer) flushAll(emit func(emission)) {
	for k, s := range c.sessions {
		c.flush(k, s, emit)
	}
}
