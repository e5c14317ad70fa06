package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// fsnotifyBlind says what fsnotify mode cannot see. fsnotify v1.10 has read, open and
// close events on Linux (inotify IN_ACCESS, IN_OPEN) but only behind an unexported
// option, and inotify would not name the process anyway.
const fsnotifyBlind = "fsnotify: reads and opens are not seen and no process identity (pid, ppid, uid, user, exe, cmdline) is available"

// fsnWatcher watches the directories holding the watched paths with fsnotify and keeps
// the events naming watched paths. Watching the parent rather than the file keeps the
// watch alive when the file is replaced by a rename, and reports its creation. A watched
// directory is watched with every directory under it; one created later is added at the
// next rescan, so what happens in it before then is not seen.
type fsnWatcher struct {
	opts     Options
	targets  []*target
	w        *fsnotify.Watcher
	degraded string
	lost     atomic.Uint64
	started  atomic.Bool
	closed   atomic.Bool

	// Owned by the constructor, then by Run's goroutine.
	m       *matcher
	waiting map[string]error // directories not watched yet, and why

	closeOnce sync.Once
	closeErr  error
}

func newFsnotifyWatcher(targets []*target, opts Options, why string) (*fsnWatcher, error) {
	w, err := fsnotify.NewBufferedWatcher(uint(opts.Buffer))
	if err != nil {
		return nil, fmt.Errorf("creating fsnotify watcher: %w", err)
	}
	f := &fsnWatcher{opts: opts, targets: targets, w: w, degraded: fsnotifyBlind}
	if why != "" {
		f.degraded = why + "; " + fsnotifyBlind
	}
	f.rescan()
	return f, nil
}

// rescan works out which directories to watch and what to match from the targets as
// the file system is now, and adds the watches that are missing.
func (f *fsnWatcher) rescan() {
	m := newMatcher()
	dirs := map[string]bool{}
	for _, t := range f.targets {
		r, err := resolve(t.path)
		switch {
		case err == nil && r.isDir:
			m.add(r.real, true, t.rules)
			for _, d := range subdirs(r.real) {
				dirs[d] = true
			}
		case err == nil:
			m.add(r.real, false, t.rules)
			dirs[filepath.Dir(r.real)] = true
		default:
			// Not there yet: watch its directory, to see it created.
			pr, perr := resolve(filepath.Dir(t.path))
			if perr != nil || !pr.isDir {
				if f.waiting[t.path] == nil {
					f.opts.Logger.Warn("watched path and its directory are missing; will retry", "path", t.path, "err", err)
				}
				f.setWaiting(t.path, err)
				continue
			}
			m.add(filepath.Join(pr.real, filepath.Base(t.path)), false, t.rules)
			dirs[pr.real] = true
		}
		f.setWaiting(t.path, nil)
	}
	have := f.w.WatchList()
	for d := range dirs {
		if slices.Contains(have, d) {
			continue
		}
		if err := f.w.Add(d); err != nil {
			if f.waiting[d] == nil {
				f.opts.Logger.Warn("cannot watch directory; will retry", "dir", d, "err", err)
			}
			f.setWaiting(d, err)
			continue
		}
		f.setWaiting(d, nil)
		f.opts.Logger.Debug("watching directory", "dir", d, "mode", ModeFsnotify)
	}
	f.m = m
}

// subdirs lists root and every directory under it, not following symlinks; what
// cannot be read is skipped (and watched once a later rescan can read it).
func subdirs(root string) []string {
	var out []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	return out
}

func (f *fsnWatcher) setWaiting(key string, err error) {
	if f.waiting == nil {
		f.waiting = map[string]error{}
	}
	if err == nil {
		delete(f.waiting, key)
		return
	}
	f.waiting[key] = err
}

// Mode implements FileWatcher.
func (f *fsnWatcher) Mode() string { return ModeFsnotify }

// Degraded implements FileWatcher.
func (f *fsnWatcher) Degraded() string { return f.degraded }

// Lost implements FileWatcher.
func (f *fsnWatcher) Lost() uint64 { return f.lost.Load() }

// Close implements FileWatcher.
func (f *fsnWatcher) Close() error {
	f.closed.Store(true)
	f.closeOnce.Do(func() {
		if err := f.w.Close(); err != nil {
			f.closeErr = fmt.Errorf("closing fsnotify watcher: %w", err)
		}
	})
	return f.closeErr
}

// Run implements FileWatcher.
func (f *fsnWatcher) Run(ctx context.Context, out chan<- chain.Event) error {
	if !f.started.CompareAndSwap(false, true) || f.closed.Load() {
		return ErrClosed
	}
	defer f.Close()
	tick := time.NewTicker(f.opts.Rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			f.rescan()
		case err, ok := <-f.w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				f.loss(Loss{Source: ModeFsnotify, Reason: LossKernelOverflow, Count: 1, AtLeast: true})
				continue
			}
			f.opts.Logger.Warn("fsnotify error", "err", err)
		case ev, ok := <-f.w.Events:
			if !ok {
				return nil
			}
			for _, e := range f.events(ev) {
				select {
				case out <- e:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

func (f *fsnWatcher) loss(l Loss) {
	f.lost.Add(l.Count)
	f.opts.Logger.Warn("file events lost", "mode", l.Source, "reason", l.Reason, "count", l.Count, "at_least", l.AtLeast)
	if f.opts.OnLoss != nil {
		f.opts.OnLoss(l)
	}
}

var fsnotifyOps = []struct {
	op   fsnotify.Op
	name string
}{
	{fsnotify.Create, OpCreate},
	{fsnotify.Write, OpWrite},
	{fsnotify.Remove, OpRemove},
	{fsnotify.Rename, OpRename},
	{fsnotify.Chmod, OpChmod},
}

// events turns one fsnotify event into a chain.Event per operation per matching rule.
func (f *fsnWatcher) events(ev fsnotify.Event) []chain.Event {
	path := filepath.Clean(ev.Name)
	rules := f.m.match(path)
	if len(rules) == 0 {
		return nil
	}
	var out []chain.Event
	for _, o := range fsnotifyOps {
		if !ev.Has(o.op) {
			continue
		}
		for _, r := range rules {
			out = append(out, chain.Event{
				Type:     chain.TypeFile,
				Rule:     r.Name,
				Severity: r.Severity,
				Source:   ModeFsnotify,
				Path:     path,
				Op:       o.name,
				Count:    1,
				Missing:  slices.Clone(missingNoProcess),
			})
		}
	}
	return out
}
