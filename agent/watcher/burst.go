package watcher

import "time"

// burstKey names what a burst repeats: one process doing one operation to one file.
// Accesses name the file by inode, so that a loop through several hard links is one
// burst; directory entry changes name it by path, because a loop that creates and
// removes one name makes a new inode each time.
//
// The executable is part of the key: a process that execs is another program under the
// same pid (setpriv reading /etc/passwd, then becoming cat, which reads it too), and
// each program's access is reported.
type burstKey struct {
	pid  int32
	exe  string
	op   string
	file fileID
	path string
}

func burstKeyOf(e emission) burstKey {
	if e.rules != nil {
		return burstKey{pid: e.key.pid, exe: e.snap.exe(), op: e.op, path: e.from + RenameArrow + e.path}
	}
	return burstKey{pid: e.key.pid, exe: e.snap.exe(), op: e.op, file: e.key.file}
}

// burst is one key's window: its first event was sent, the repeats since are counted.
type burst struct {
	last  emission // the newest repeat: its path and snapshot go into the summary
	count uint64   // repeats (in notifications) not sent yet
	until time.Time
}

// limiter de-duplicates bursts beyond one session. The first event of a (pid, file, op)
// is sent at once and opens a window; the events of the same key that follow within the
// window are only counted, and when it ends their count is sent as one summary event,
// which opens the next window. A process looping over a watched file therefore yields
// one event at once and one per window while it goes on, and the Count fields add up to
// every notification seen. A limiter is used by one goroutine.
//
// Every window is equally long, so windows end in the order they open: order queues
// them so, and add, due and next cost O(1) amortised however many keys a burst spans
// (a scan of all keys made a 50,000-file burst quadratic). An entry whose key's window
// was renewed or forgotten since is stale and skipped.
type limiter struct {
	window time.Duration
	bursts map[burstKey]*burst
	order  []windowEnd
	head   int // order[:head] is consumed
}

// windowEnd is when one key's window ends.
type windowEnd struct {
	key   burstKey
	until time.Time
}

func newLimiter(window time.Duration) *limiter {
	return &limiter{window: window, bursts: map[burstKey]*burst{}}
}

// open starts a window for k at now.
func (l *limiter) open(k burstKey, b *burst, now time.Time) {
	b.until = now.Add(l.window)
	l.order = append(l.order, windowEnd{key: k, until: b.until})
}

// live says whether w is the current window of its key.
func (l *limiter) live(w windowEnd) (*burst, bool) {
	b := l.bursts[w.key]
	return b, b != nil && b.until.Equal(w.until)
}

// pop consumes the head of order, compacting it now and then.
func (l *limiter) pop() {
	l.head++
	if l.head >= 1024 && l.head*2 >= len(l.order) {
		l.order = append(l.order[:0], l.order[l.head:]...)
		l.head = 0
	}
}

// add sends e at once if it opens a window, and counts it otherwise.
func (l *limiter) add(e emission, now time.Time, emit func(emission)) {
	k := burstKeyOf(e)
	b := l.bursts[k]
	switch {
	case b == nil:
		b = &burst{}
		l.bursts[k] = b
		l.open(k, b, now)
		emit(e)
	case !now.Before(b.until):
		// The window ended before due saw it: this event joins its summary.
		e.count += b.count
		b.count = 0
		l.open(k, b, now)
		emit(e)
	default:
		b.count += e.count
		b.last = e
	}
}

// due sends the summaries of the windows that have ended by now and forgets the keys
// whose window ended with nothing to summarise.
func (l *limiter) due(now time.Time, emit func(emission)) {
	for l.head < len(l.order) {
		w := l.order[l.head]
		if now.Before(w.until) {
			return
		}
		l.pop()
		b, ok := l.live(w)
		if !ok {
			continue
		}
		if b.count == 0 {
			delete(l.bursts, w.key)
			continue
		}
		emit(b.summary())
		b.count = 0
		l.open(w.key, b, now)
	}
}

func (b *burst) summary() emission {
	s := b.last
	s.count = b.count
	return s
}

// next is when due next has something to do.
func (l *limiter) next() (time.Time, bool) {
	for l.head < len(l.order) {
		if w := l.order[l.head]; func() bool { _, ok := l.live(w); return ok }() {
			return w.until, true
		}
		l.pop()
	}
	return time.Time{}, false
}

// flushAll sends every pending summary, at shutdown.
func (l *limiter) flushAll(emit func(emission)) {
	for k, b := range l.bursts {
		if b.count > 0 {
			emit(b.summary())
		}
		delete(l.bursts, k)
	}
	l.order, l.head = l.order[:0], 0
}
