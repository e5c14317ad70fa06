package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/agent/sigwatch"
	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// eventWatcher is what every watcher (file, process, network) offers the pipeline; see
// watcher.FileWatcher for the contract.
type eventWatcher interface {
	Run(ctx context.Context, out chan<- chain.Event) error
	Mode() string
	Degraded() string
	Lost() uint64
	Close() error
}

// namedWatcher is a watcher with the name /healthz and gap entries give it.
type namedWatcher struct {
	eventWatcher
	name     string
	lostSeen uint64 // pipeline goroutine only
}

// newWatchers puts in place one watcher per rule type the config uses, each in the
// mode the config asks for ("auto": the best this host allows).
func newWatchers(cfg *config.Config, logger *slog.Logger) ([]*namedWatcher, error) {
	var (
		out   []*namedWatcher
		files []watcher.FileRule
	)
	closeAll := func() {
		for _, w := range out {
			w.Close()
		}
	}
	for _, r := range cfg.Rules {
		if r.Type == config.TypeFile {
			files = append(files, watcher.FileRule{Name: r.Name, Severity: r.Severity, Paths: r.Paths})
		}
	}
	if len(files) > 0 {
		w, err := watcher.NewFileWatcher(files, watcher.Options{ForceMode: autoMode(cfg.Watchers.File.Mode), Logger: logger.With("component", "file-watcher")})
		if err != nil {
			return nil, fmt.Errorf("starting file watcher: %w", err)
		}
		out = append(out, &namedWatcher{eventWatcher: w, name: "file"})
	}
	more, err := newKernelWatchers(cfg, logger)
	if err != nil {
		closeAll()
		return nil, err
	}
	return append(out, more...), nil
}

// autoMode is the watcher packages' spelling of a configured mode.
func autoMode(m string) string {
	if m == "auto" {
		return ""
	}
	return m
}

// runWatchers runs every watcher and the signal tracer until ctx ends. A watcher that
// fails stops the agent: running blind in silence is what a tripwire must not do.
func (a *Agent) runWatchers(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, w := range a.watchers {
		g.Go(func() error {
			if err := w.Run(gctx, a.events); err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s watcher: %w", w.name, err)
			}
			return nil
		})
	}
	if a.signals != nil {
		g.Go(func() error {
			// After ctx ends, what is already in the ring buffer (the SIGTERM that
			// ended it) is still read, for up to 200 ms.
			err := a.signals.Run(ctx, 200*time.Millisecond, a.recordSignal)
			if err != nil {
				a.logger.Error("signal tracer stopped", "err", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// recordSignal queues a signal record for the chain; the pipeline writes it.
func (a *Agent) recordSignal(s sigwatch.Signal) {
	a.metrics.signal(s)
	a.notices <- signalPayload("signal_received", s, s.Describe())
	if err := a.signals.Forget(s); err != nil {
		a.logger.Warn("signal recorded but kept for the next start too", "err", err)
	}
}

// recordPreviousSignals writes into the chain what the pinned signal ring says happened
// to earlier agents that could not write it themselves (SIGKILL, SIGSTOP never
// continued), before anything else this agent records.
func (a *Agent) recordPreviousSignals() error {
	if a.signals == nil {
		return nil
	}
	prev := a.signals.Previous()
	if len(prev) == 0 {
		return nil
	}
	payloads := make([]chain.Payload, len(prev))
	for i, s := range prev {
		payloads[i] = signalPayload("signal_before_start", s, "before this start: "+s.Describe())
	}
	if err := a.chain.Append(payloads...); err != nil {
		return fmt.Errorf("recording earlier signals in the audit chain: %w", err)
	}
	return a.signals.Forget(prev[len(prev)-1])
}

func signalPayload(what string, s sigwatch.Signal, msg string) chain.Payload {
	return chain.Payload{Kind: chain.KindAgent, Notice: &chain.Notice{
		What: what, Message: fmt.Sprintf("%s at %s", msg, s.At.Format(time.RFC3339Nano)),
		Signal: &chain.Signal{
			Name: s.Name, Number: s.Sig, Code: s.Code, At: s.At, TargetPID: s.TargetPID,
			SenderPID: s.SenderPID, SenderUID: s.SenderUID, SenderComm: s.SenderComm,
		},
	}}
}
