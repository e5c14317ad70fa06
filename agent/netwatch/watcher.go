package netwatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// lossPoll is how often Run reads the monitor's kernel loss counter.
const lossPoll = time.Second

// monitor watches connections of existing services. Its goroutines hand events to the
// netWatcher's queue (netWatcher.emit) and report a failure they cannot recover from
// through netWatcher.fail.
type monitor interface {
	mode() string
	degraded() string
	// kernelLost is the number of events the kernel dropped so far.
	kernelLost() uint64
	// close detaches the monitor and waits for its goroutines.
	close() error
}

// netWatcher is the Watcher: decoys and a monitor feed one bounded queue, which Run
// drains into out. Producers never wait: what does not fit is counted and reported
// from Run as a loss.
type netWatcher struct {
	opts     Options
	mon      monitor // nil when no monitor rule is watched
	decoys   *decoys // nil when there are no decoy rules
	degraded string

	queue      chan chain.Event
	lossSignal chan struct{}
	failed     chan struct{}
	failErr    error // set before failed is closed
	failOnce   sync.Once

	// Counted by producers, reported by Run.
	dropped, refused atomic.Uint64
	lost             atomic.Uint64
	reported         struct{ dropped, refused, kernel uint64 }

	started   atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

func newNetWatcher(p plan, opts Options) (*netWatcher, error) {
	w := &netWatcher{
		opts:       opts,
		queue:      make(chan chain.Event, queueLen),
		lossSignal: make(chan struct{}, 1),
		failed:     make(chan struct{}),
		closed:     make(chan struct{}),
	}
	var degraded []string
	if len(p.decoys) > 0 {
		d, err := openDecoys(p.decoys, opts, w)
		if err != nil {
			return nil, err
		}
		w.decoys = d
		degraded = append(degraded, d.degraded...)
	}
	if len(p.watch) > 0 {
		mon, err := newMonitor(p.watch, opts, w)
		switch {
		case err == nil:
			w.mon = mon
			degraded = append(degraded, mon.degraded())
		case errors.Is(err, ErrNotSupported) && (opts.ForceMode == "" || opts.ForceMode == "auto"):
			opts.Logger.Warn("network monitor rules are not watched", "rules", p.monitors, "err", err)
			degraded = append(degraded, fmt.Sprintf("monitor rules %s are not watched: %v", strings.Join(p.monitors, ", "), err))
		default:
			if w.decoys != nil {
				w.decoys.close()
			}
			return nil, err
		}
	}
	if len(p.excluded) > 0 {
		degraded = append(degraded, fmt.Sprintf("not monitored because a decoy listens there (the decoy reports them): %s", strings.Join(p.excluded, ", ")))
	}
	w.degraded = joinNonEmpty(degraded)
	if w.decoys != nil {
		w.decoys.start()
	}
	return w, nil
}

func joinNonEmpty(parts []string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "; ")
}

// emit queues events without waiting, counting those that do not fit. Safe for
// concurrent use.
func (w *netWatcher) emit(evs []chain.Event) {
	for _, ev := range evs {
		select {
		case w.queue <- ev:
		default:
			w.dropped.Add(1)
			w.signalLoss()
		}
	}
}

// refuse counts a decoy connection turned away.
func (w *netWatcher) refuse() {
	w.refused.Add(1)
	w.signalLoss()
}

func (w *netWatcher) signalLoss() {
	select {
	case w.lossSignal <- struct{}{}:
	default:
	}
}

// fail makes Run return err; only the first failure is kept.
func (w *netWatcher) fail(err error) {
	w.failOnce.Do(func() {
		w.failErr = err
		close(w.failed)
	})
}

// Run implements Watcher.
func (w *netWatcher) Run(ctx context.Context, out chan<- chain.Event) error {
	if !w.started.CompareAndSwap(false, true) || w.isClosed() {
		return ErrClosed
	}
	defer w.Close()
	tick := time.NewTicker(lossPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.shutdown(out, nil)
			return nil
		case <-w.closed:
			w.reportLosses()
			return nil
		case <-w.failed:
			w.reportLosses()
			return w.failErr
		case <-w.lossSignal:
			w.reportLosses()
		case <-tick.C:
			w.reportLosses()
		case ev := <-w.queue:
			select {
			case out <- ev:
			case <-ctx.Done():
				w.shutdown(out, &ev)
				return nil
			}
		}
	}
}

// shutdown closes the watcher, offers out what was still queued without waiting, and
// reports what it could not send as lost.
func (w *netWatcher) shutdown(out chan<- chain.Event, pending *chain.Event) {
	w.Close()
	var unsent uint64
	offer := func(ev chain.Event) {
		select {
		case out <- ev:
		default:
			unsent++
		}
	}
	if pending != nil {
		offer(*pending)
	}
	for more := true; more; {
		select {
		case ev := <-w.queue:
			offer(ev)
		default:
			more = false
		}
	}
	w.reportLosses()
	if unsent > 0 {
		w.loss(Loss{Source: w.Mode(), Reason: watcher.LossShutdown, Count: unsent})
	}
}

// reportLosses turns the counters into Loss reports. Run's goroutine only.
func (w *netWatcher) reportLosses() {
	if w.mon != nil {
		if n := w.mon.kernelLost(); n > w.reported.kernel {
			w.loss(Loss{Source: w.mon.mode(), Reason: watcher.LossKernelOverflow, Count: n - w.reported.kernel})
			w.reported.kernel = n
		}
	}
	if n := w.dropped.Load(); n > w.reported.dropped {
		w.loss(Loss{Source: w.Mode(), Reason: watcher.LossBufferFull, Count: n - w.reported.dropped})
		w.reported.dropped = n
	}
	if n := w.refused.Load(); n > w.reported.refused {
		w.loss(Loss{Source: ModeDecoy, Reason: LossDecoyBusy, Count: n - w.reported.refused})
		w.reported.refused = n
	}
}

func (w *netWatcher) loss(l Loss) {
	w.lost.Add(l.Count)
	w.opts.Logger.Warn("network events lost", "mode", l.Source, "reason", l.Reason, "count", l.Count)
	if w.opts.OnLoss != nil {
		w.opts.OnLoss(l)
	}
}

// Mode implements Watcher.
func (w *netWatcher) Mode() string {
	if w.mon != nil {
		return w.mon.mode()
	}
	return ModeDecoy
}

// Degraded implements Watcher.
func (w *netWatcher) Degraded() string { return w.degraded }

// Lost implements Watcher.
func (w *netWatcher) Lost() uint64 { return w.lost.Load() }

func (w *netWatcher) isClosed() bool {
	select {
	case <-w.closed:
		return true
	default:
		return false
	}
}

// Close implements Watcher.
func (w *netWatcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.closed)
		var errs []error
		if w.decoys != nil {
			errs = append(errs, w.decoys.close())
		}
		if w.mon != nil {
			errs = append(errs, w.mon.close())
		}
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}
