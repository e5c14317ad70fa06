//go:build linux

package watcher

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/agent/proc"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// reapEvery is how often sessions whose close was lost (queue overflow) are looked
// for; reapIdle is how long such a session must have been quiet.
const (
	reapEvery = 30 * time.Second
	reapIdle  = time.Minute
)

// Run implements FileWatcher.
func (w *fanWatcher) Run(ctx context.Context, out chan<- chain.Event) error {
	if !w.started.CompareAndSwap(false, true) || w.isClosed() {
		return ErrClosed
	}
	defer w.Close()

	c := newCoalescer(w.opts.CoalesceWindow)
	lim := newLimiter(w.opts.BurstWindow)
	var queue []emission
	send := func(e emission) { queue = append(queue, e) }
	emit := func(e emission) { lim.add(e, time.Now(), send) }
	var entriesDone <-chan struct{}
	if w.entries != nil {
		entriesDone = w.entries.done
	}

	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	rescan := time.NewTicker(w.opts.Rescan)
	defer rescan.Stop()
	reap := time.NewTicker(reapEvery)
	defer reap.Stop()

	for {
		select {
		case <-ctx.Done():
			w.shutdown(c, lim, out, nil)
			return nil
		case <-w.readerDone:
			w.reportLosses()
			if w.readerErr != nil {
				return w.readerErr
			}
			return nil // closed
		case <-entriesDone:
			w.reportLosses()
			if w.entries.err != nil {
				return w.entries.err
			}
			return nil // closed
		case ev := <-w.records:
			w.take(ev, c, emit)
			// Take what else is queued, so that a burst costs one timer reset.
			for more := true; more && len(queue) < 256; {
				select {
				case ev := <-w.records:
					w.take(ev, c, emit)
				default:
					more = false
				}
			}
		case <-due.C:
			now := time.Now()
			c.due(now, emit)
			lim.due(now, send)
		case <-w.lossSignal:
			w.reportLosses()
		case <-rescan.C:
			if err := w.rescan(false); err != nil {
				w.opts.Logger.Warn("rescanning watched paths", "err", err)
			}
		case <-reap.C:
			c.reap(time.Now().Add(-reapIdle), alive, emit)
		}

		for i, e := range queue {
			for _, ev := range w.events(e) {
				select {
				case out <- ev:
				case <-ctx.Done():
					// The event being sent is offered again with the rest.
					w.shutdown(c, lim, out, queue[i:])
					return nil
				}
			}
		}
		queue = queue[:0]
		if at, ok := nextDue(c, lim); ok {
			due.Reset(max(time.Until(at), 0))
		} else {
			due.Stop()
		}
	}
}

// nextDue is when the coalescer or the limiter next has something due.
func nextDue(c *coalescer, lim *limiter) (time.Time, bool) {
	at, ok := c.next()
	if lat, lok := lim.next(); lok && (!ok || lat.Before(at)) {
		return lat, true
	}
	return at, ok
}

// take folds one record in: accesses into their session, entry changes straight to
// emit. A directory created or moved into a watched tree is marked with what is in it.
func (w *fanWatcher) take(ev rawEvent, c *coalescer, emit func(emission)) {
	ch := ev.entry
	if ch == nil {
		c.add(ev, emit)
		return
	}
	emit(emission{key: sessionKey{pid: ev.pid}, path: ev.path, op: ch.op, count: 1, snap: ev.snap, from: ch.from, rules: ch.rules})
	if ch.op != OpCreate && ch.op != OpRename {
		return
	}
	if ch.isDir {
		w.growTree(ev.path, emit)
	}
	if slices.ContainsFunc(w.targets, func(t *target) bool { return t.path == ev.path }) {
		// A watched path replaced (vipw, useradd, an editor's save): watch the new
		// file now rather than at the next rescan.
		if err := w.rescan(false); err != nil {
			w.opts.Logger.Warn("rescanning watched paths", "err", err)
		}
	}
}

// growTree marks a directory that appeared under a watched directory, and reports as
// created, with no known actor, what was put in it before its mark was in place: a
// `mkdir -p a/b && cp x a/b/` can be faster than we are.
func (w *fanWatcher) growTree(dir string, emit func(emission)) {
	rules := w.index.Load().m.under(dir)
	if len(rules) == 0 {
		return
	}
	w.fdMu.RLock()
	if !w.closed {
		w.markTree(dir, rules, func(path string) {
			emit(emission{path: path, op: OpCreate, count: 1, rules: rules})
		})
	}
	w.fdMu.RUnlock()
	w.reindex()
}

// shutdown closes the group, then offers out what was still queued or held without
// waiting, and reports what it could not send as lost.
func (w *fanWatcher) shutdown(c *coalescer, lim *limiter, out chan<- chain.Event, queued []emission) {
	w.Close()
	var unsent uint64
	send := func(e emission) {
		for _, ev := range w.events(e) {
			select {
			case out <- ev:
			default:
				unsent++
			}
		}
	}
	emit := func(e emission) { lim.add(e, time.Now(), send) }
	for _, e := range queued {
		send(e)
	}
	for more := true; more; {
		select {
		case ev := <-w.records:
			w.take(ev, c, emit)
		default:
			more = false
		}
	}
	c.flushAll(emit)
	lim.flushAll(send)
	w.reportLosses()
	if unsent > 0 {
		w.loss(Loss{Source: ModeFanotify, Reason: LossShutdown, Count: unsent})
	}
}

// reportLosses turns the reader's counters into Loss reports and logs.
func (w *fanWatcher) reportLosses() {
	if n := w.overflows.Load(); n > w.reportedOverflows {
		w.loss(Loss{Source: ModeFanotify, Reason: LossKernelOverflow, Count: n - w.reportedOverflows, AtLeast: true})
		w.reportedOverflows = n
	}
	if n := w.dropped.Load(); n > w.reportedDropped {
		w.loss(Loss{Source: ModeFanotify, Reason: LossBufferFull, Count: n - w.reportedDropped})
		w.reportedDropped = n
	}
	if n := w.respErrs.Load(); n > w.reportedRespErrs {
		err, _ := w.lastRespErr.Load().(error)
		w.opts.Logger.Error("answering fanotify permission events failed", "count", n-w.reportedRespErrs, "err", err)
		w.reportedRespErrs = n
	}
	if n := w.lookupTimeouts.Load(); n > w.reportedTimeouts {
		w.opts.Logger.Warn("process snapshots timed out; opens allowed without them", "count", n-w.reportedTimeouts, "timeout", lookupTimeout)
		w.reportedTimeouts = n
	}
}

func (w *fanWatcher) loss(l Loss) {
	w.lost.Add(l.Count)
	w.opts.Logger.Warn("file events lost", "mode", l.Source, "reason", l.Reason, "count", l.Count, "at_least", l.AtLeast)
	if w.opts.OnLoss != nil {
		w.opts.OnLoss(l)
	}
}

// rulesFor returns the rules covering a file: marked itself (by inode, so a hard link
// or rename does not hide it), a child of a marked directory, or, failing both, by
// path.
func (w *fanWatcher) rulesFor(file fileID, path string) []ruleRef {
	idx := w.index.Load()
	rules := appendRules(nil, idx.byFile[file])
	if len(idx.byDir) > 0 && path != "" {
		var st unix.Stat_t
		if unix.Stat(filepath.Dir(path), &st) == nil {
			rules = appendRules(rules, idx.byDir[fileID{dev: uint64(st.Dev), ino: st.Ino}])
		}
	}
	if len(rules) == 0 && path != "" {
		rules = idx.m.match(path)
	}
	return rules
}

// events turns one emission into a chain.Event per matching rule, with the process
// identity from the open's snapshot or, failing that, from /proc now.
func (w *fanWatcher) events(e emission) []chain.Event {
	rules := e.rules
	if rules == nil {
		rules = w.rulesFor(e.key.file, e.path)
	}
	if len(rules) == 0 {
		return nil
	}
	snap := e.snap
	switch {
	case snap != nil:
	case e.key.pid == 0:
		snap = &snapshot{info: proc.Info{Missing: []string{"pid", proc.FieldPPID, proc.FieldUID, proc.FieldExe, proc.FieldCmdline}}}
	default:
		info, err := proc.Lookup(e.key.pid)
		snap = &snapshot{info: info, err: err}
	}
	path := e.path
	if e.from != "" {
		path = e.from + RenameArrow + e.path
	}
	base := chain.Event{
		Type:    chain.TypeFile,
		Source:  ModeFanotify,
		Path:    path,
		Op:      e.op,
		Count:   e.count,
		PID:     e.key.pid,
		Exe:     snap.info.Exe,
		Cmdline: snap.info.Cmdline,

		CmdlineTruncated: snap.info.Truncated,
	}
	missing := slices.Clone(snap.info.Missing)
	if !slices.Contains(missing, proc.FieldPPID) {
		base.PPID = snap.info.PPID
	}
	haveUID := !slices.Contains(missing, proc.FieldUID)
	if haveUID {
		base.User = w.users.Name(snap.info.UID)
	}
	if base.User == "" {
		missing = append(missing, "user")
	}
	if e.path == "" {
		missing = append(missing, "path")
	}
	out := make([]chain.Event, 0, len(rules))
	for _, r := range rules {
		ev := base
		ev.Rule, ev.Severity = r.Name, r.Severity
		if haveUID {
			uid := snap.info.UID
			ev.UID = &uid
		}
		if len(missing) > 0 {
			ev.Missing = slices.Clone(missing)
		}
		out = append(out, ev)
	}
	return out
}

// alive says whether a process exists.
func alive(pid int32) bool {
	err := unix.Kill(int(pid), 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
