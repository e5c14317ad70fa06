package watcher

import "time"

// burstKey names what a burst repeats: one process doing one operation to one file.
// Accesses name the file by inode, so that a loop through several hard links is one
// burst; directory entry changes name it by path, because a loop that creates and
// removes one name makes a new inode each time.
type burstKey struct {
	pid  int32
	op   string
	file fileID
	path string
}

func burstKeyOf(e emission) burstKey {
	if e.rules != nil {
		return burstKey{pid: e.key.pid, op: e.op, path: e.from + RenameArrow + e.path}
	}
	return burstKey{pid: e.key.pid, op: e.op, file: e.key.file}
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
type limiter struct {
	window time.Duration
	bursts map[burstKey]*burst
}

func newLimiter(window time.Duration) *limiter {
	return &limiter{window: window, bursts: map[burstKey]*burst{}}
}

// add sends e at once if it opens a window, and counts it otherwise.
func (l *limiter) add(e emission, now time.Time, emit func(emission)) {
	k := burstKeyOf(e)
	b := l.bursts[k]
	switch {
	case b == nil:
		l.bursts[k] = &burst{until: now.Add(l.window)}
		emit(e)
	case !now.Before(b.until):
		// The window ended before due saw it: this event joins its summary.
		e.count += b.count
		b.count, b.until = 0, now.Add(l.window)
		emit(e)
	default:
		b.count += e.count
		b.last = e
	}
}

// due sends the summaries of the windows that have ended by now and forgets the keys
// whose window ended with nothing to summarise.
func (l *limiter) due(now time.Time, emit func(emission)) {
	for k, b := range l.bursts {
		if now.Before(b.until) {
			continue
		}
		if b.count == 0 {
			delete(l.bursts, k)
			continue
		}
		emit(b.summary())
		b.count, b.until = 0, now.Add(l.window)
	}
}

func (b *burst) summary() emission {
	s := b.last
	s.count = b.count
	return s
}

// next is when due next has something to do.
func (l *limiter) next() (time.Time, bool) {
	var best time.Time
	found := false
	for _, b := range l.bursts {
		if !found || b.until.Before(best) {
			best, found = b.until, true
		}
	}
	return best, found
}

// flushAll sends every pending summary, at shutdown.
func (l *limiter) flushAll(emit func(emission)) {
	for k, b := range l.bursts {
		if b.count > 0 {
			emit(b.summary())
		}
		delete(l.bursts, k)
	}
}
