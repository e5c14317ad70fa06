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
	var queue []emission
	emit := func(e emission) { queue = append(queue, e) }

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
			w.shutdown(c, out, nil)
			return nil
		case <-w.readerDone:
			w.reportLosses()
			if w.readerErr != nil {
				return w.readerErr
			}
			return nil // closed
		case ev := <-w.records:
			c.add(ev, emit)
			// Take what else is queued, so that a burst costs one timer reset.
			for more := true; more && len(queue) < 256; {
				select {
				case ev := <-w.records:
					c.add(ev, emit)
				default:
					more = false
				}
			}
		case <-due.C:
			c.due(time.Now(), emit)
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
					w.shutdown(c, out, queue[i:])
					return nil
				}
			}
		}
		queue = queue[:0]
		if at, ok := c.next(); ok {
			due.Reset(max(time.Until(at), 0))
		} else {
			due.Stop()
		}
	}
}

// shutdown closes the group, then offers out what was still queued or held without
// waiting, and reports what it could not send as lost.
func (w *fanWatcher) shutdown(c *coalescer, out chan<- chain.Event, queued []emission) {
	w.Close()
	var unsent uint64
	emit := func(e emission) {
		for _, ev := range w.events(e) {
			select {
			case out <- ev:
			default:
				unsent++
			}
		}
	}
	for _, e := range queued {
		emit(e)
	}
	for more := true; more; {
		select {
		case ev := <-w.records:
			c.add(ev, emit)
		default:
			more = false
		}
	}
	c.flushAll(emit)
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
	rules := appendRules(nil, w.byFile[file])
	if len(w.byDir) > 0 && path != "" {
		var st unix.Stat_t
		if unix.Stat(filepath.Dir(path), &st) == nil {
			rules = appendRules(rules, w.byDir[fileID{dev: uint64(st.Dev), ino: st.Ino}])
		}
	}
	if len(rules) == 0 && path != "" {
		rules = w.m.match(path)
	}
	return rules
}

// events turns one emission into a chain.Event per matching rule, with the process
// identity from the open's snapshot or, failing that, from /proc now.
func (w *fanWatcher) events(e emission) []chain.Event {
	rules := w.rulesFor(e.key.file, e.path)
	if len(rules) == 0 {
		return nil
	}
	snap := e.snap
	if snap == nil {
		info, err := proc.Lookup(e.key.pid)
		snap = &snapshot{info: info, err: err}
	}
	base := chain.Event{
		Type:    chain.TypeFile,
		Source:  ModeFanotify,
		Path:    e.path,
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
