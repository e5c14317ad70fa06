package procwatch

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tripwire-project/tripwire/agent/proc"
	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// lossCheckEvery is how often Run asks the kernel side how many records it lost.
const lossCheckEvery = 500 * time.Millisecond

// source is one mode's kernel side. Its reader (read) runs on a goroutine of its own
// and hands records over without waiting; everything else is called from Run's
// goroutine or Close.
type source interface {
	mode() string
	// limits is "" or what this mode cannot see, for Degraded.
	limits() string
	// read delivers execs to push until close is called (it then returns nil) or it
	// cannot go on. push never blocks.
	read(push func(*execRecord)) error
	// kernelLost is the number of records the kernel dropped so far, and whether that
	// number is a lower bound.
	kernelLost() (n uint64, atLeast bool)
	// close stops read and releases the kernel resources; it is called once.
	close() error
}

// engine is the Watcher of every mode: it runs a source's reader, matches and
// enriches records on Run's goroutine, and accounts for losses.
type engine struct {
	src      source
	m        *matcher
	en       *enricher
	opts     Options
	fallback string // why auto mode did not pick a better mode
	users    *proc.Users

	records    chan *execRecord
	lossSignal chan struct{}
	readerDone chan struct{}
	readerErr  error // set before readerDone is closed

	dropped      atomic.Uint64 // records that did not fit in records
	lost         atomic.Uint64
	reportedKern uint64 // owned by Run's goroutine, as is reportedDrop
	reportedDrop uint64

	started   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

func newEngine(src source, m *matcher, en *enricher, opts Options, fallback string) *engine {
	e := &engine{
		src: src, m: m, en: en, opts: opts, fallback: fallback,
		users:      proc.NewUsers(0),
		records:    make(chan *execRecord, queueLen),
		lossSignal: make(chan struct{}, 1),
		readerDone: make(chan struct{}),
	}
	go func() {
		e.readerErr = src.read(e.push)
		close(e.readerDone)
	}()
	if d := e.Degraded(); d != "" {
		opts.Logger.Warn("process watcher degraded", "mode", src.mode(), "reason", d)
	}
	return e
}

// push hands a record from the reader to Run, counting it as lost if the queue is full.
func (e *engine) push(r *execRecord) {
	if e.opts.ExcludePID > 0 && r.pid == int32(e.opts.ExcludePID) {
		r.release()
		return
	}
	select {
	case e.records <- r:
	default:
		r.release()
		e.dropped.Add(1)
		select {
		case e.lossSignal <- struct{}{}:
		default:
		}
	}
}

// Mode implements Watcher.
func (e *engine) Mode() string { return e.src.mode() }

// Degraded implements Watcher.
func (e *engine) Degraded() string {
	var parts []string
	if e.fallback != "" {
		parts = append(parts, e.fallback)
	}
	if l := e.src.limits(); l != "" {
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
}

// Lost implements Watcher.
func (e *engine) Lost() uint64 { return e.lost.Load() }

// Close implements Watcher.
func (e *engine) Close() error {
	e.closeOnce.Do(func() {
		e.closeErr = e.src.close()
		<-e.readerDone
		if e.started.CompareAndSwap(false, true) {
			// Run never started and now never will: release what was queued.
			for more := true; more; {
				select {
				case r := <-e.records:
					r.release()
				default:
					more = false
				}
			}
		}
	})
	return e.closeErr
}

// Run implements Watcher.
func (e *engine) Run(ctx context.Context, out chan<- chain.Event) error {
	if !e.started.CompareAndSwap(false, true) {
		return ErrClosed
	}
	defer e.Close()
	tick := time.NewTicker(lossCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.shutdown(out, nil)
			return nil
		case <-e.readerDone:
			e.shutdown(out, nil)
			return e.readerErr
		case r := <-e.records:
			evs := e.events(r)
			for i, ev := range evs {
				select {
				case out <- ev:
				case <-ctx.Done():
					e.shutdown(out, evs[i:])
					return nil
				}
			}
		case <-e.lossSignal:
			e.reportLosses()
		case <-tick.C:
			e.reportLosses()
		}
	}
}

// shutdown stops the reader, then offers out what is still queued without waiting and
// reports what it could not send as lost.
func (e *engine) shutdown(out chan<- chain.Event, pending []chain.Event) {
	e.Close()
	var unsent uint64
	offer := func(evs []chain.Event) {
		for _, ev := range evs {
			select {
			case out <- ev:
			default:
				unsent++
			}
		}
	}
	offer(pending)
	for more := true; more; {
		select {
		case r := <-e.records:
			offer(e.events(r))
		default:
			more = false
		}
	}
	e.reportLosses()
	if unsent > 0 {
		e.loss(Loss{Source: e.src.mode(), Reason: watcher.LossShutdown, Count: unsent})
	}
}

// reportLosses turns the kernel's and the queue's loss counters into Loss reports.
func (e *engine) reportLosses() {
	if n, atLeast := e.src.kernelLost(); n > e.reportedKern {
		e.loss(Loss{Source: e.src.mode(), Reason: watcher.LossKernelOverflow, Count: n - e.reportedKern, AtLeast: atLeast})
		e.reportedKern = n
	}
	if n := e.dropped.Load(); n > e.reportedDrop {
		e.loss(Loss{Source: e.src.mode(), Reason: watcher.LossBufferFull, Count: n - e.reportedDrop})
		e.reportedDrop = n
	}
}

func (e *engine) loss(l Loss) {
	e.lost.Add(l.Count)
	e.opts.Logger.Warn("process events lost", "mode", l.Source, "reason", l.Reason, "count", l.Count, "at_least", l.AtLeast)
	if e.opts.OnLoss != nil {
		e.opts.OnLoss(l)
	}
}

// events hashes the record's executable if a rule needs it, matches the rules and
// returns one event per matching rule.
func (e *engine) events(r *execRecord) []chain.Event {
	defer r.release()
	if e.m.hashing && r.sha256 == "" {
		if r.exeFile != nil {
			sum, err := e.en.hashes.hash(r.exeFile, r.exeKey)
			if err != nil {
				e.opts.Logger.Warn("cannot hash executable", "pid", r.pid, "exe", r.exe, "err", err)
			}
			r.sha256 = sum
		}
		if r.sha256 == "" {
			r.missing = append(r.missing, fieldSHA256)
		}
	}
	rules := e.m.match(r.info())
	if len(rules) == 0 {
		return nil
	}
	user := ""
	if !r.lacks(fieldUID) {
		user = e.users.Name(r.uid)
	}
	if user == "" && !r.lacks(fieldUser) {
		r.missing = append(r.missing, fieldUser)
	}
	evs := make([]chain.Event, 0, len(rules))
	for _, ru := range rules {
		evs = append(evs, r.event(e.src.mode(), ru, user))
	}
	return evs
}
