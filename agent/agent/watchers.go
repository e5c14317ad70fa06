package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/agent/netwatch"
	"github.com/tripwire-project/tripwire/agent/procwatch"
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

// namedWatcher is a watcher with the name /healthz and gap entries give it, and what
// it was started with.
type namedWatcher struct {
	eventWatcher
	name     string
	rules    string // the JSON of the rules it applies, to tell whether they changed
	lostSeen uint64 // pipeline goroutine only

	cancel context.CancelFunc // set by start
	done   chan struct{}      // closed when Run has returned
}

// watcherTypes are the rule types, each served by one watcher.
var watcherTypes = []string{config.TypeFile, config.TypeProcess, config.TypeNetwork}

// newWatchers puts in place one watcher per rule type the config uses, each in the
// mode the config asks for ("auto": the best this host allows).
func newWatchers(cfg *config.Config, logger *slog.Logger) ([]*namedWatcher, error) {
	var out []*namedWatcher
	for _, typ := range watcherTypes {
		w, err := newWatcherOf(typ, cfg, cfg.Rules, logger)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		if w != nil {
			out = append(out, w)
		}
	}
	return out, nil
}

// rulesOf returns the rules of one type.
func rulesOf(typ string, rules []config.Rule) []config.Rule {
	var out []config.Rule
	for _, r := range rules {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// rulesKey is what tells whether a watcher's rules changed.
func rulesKey(rules []config.Rule) string {
	b, _ := json.Marshal(rules)
	return string(b)
}

// newWatcherOf starts the watcher for the rules of type typ, in the mode cfg asks for;
// nil when there are no such rules.
func newWatcherOf(typ string, cfg *config.Config, all []config.Rule, logger *slog.Logger) (*namedWatcher, error) {
	rules := rulesOf(typ, all)
	if len(rules) == 0 {
		return nil, nil
	}
	var (
		w   eventWatcher
		err error
	)
	switch typ {
	case config.TypeFile:
		var files []watcher.FileRule
		for _, r := range rules {
			files = append(files, watcher.FileRule{Name: r.Name, Severity: r.Severity, Paths: r.Paths})
		}
		w, err = watcher.NewFileWatcher(files, watcher.Options{ForceMode: autoMode(cfg.Watchers.File.Mode), Logger: logger.With("component", "file-watcher")})
	case config.TypeProcess:
		var procs []procwatch.Rule
		for _, r := range rules {
			procs = append(procs, procwatch.Rule{
				Name: r.Name, Severity: r.Severity, Names: r.Names, Paths: r.Paths,
				Cmdline: r.Cmdline, CmdlineRegex: r.CmdlineRegexps(), MatchContent: r.MatchContent,
			})
		}
		w, err = procwatch.New(procs, procwatch.Options{ForceMode: autoMode(cfg.Watchers.Process.Mode), Logger: logger.With("component", "process-watcher")})
	case config.TypeNetwork:
		var nets []netwatch.Rule
		for _, r := range rules {
			ports := make([]uint16, len(r.Ports))
			for i, p := range r.Ports {
				ports[i] = uint16(p) // validated 1..65535
			}
			nets = append(nets, netwatch.Rule{Name: r.Name, Severity: r.Severity, Ports: ports, Mode: r.Mode, Direction: r.Direction, Address: r.Address})
		}
		w, err = netwatch.New(nets, netwatch.Options{ForceMode: autoMode(cfg.Watchers.Network.Mode), Logger: logger.With("component", "network-watcher")})
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s watcher: %w", typ, err)
	}
	return &namedWatcher{eventWatcher: w, name: typ, rules: rulesKey(rules)}, nil
}

// autoMode is the watcher packages' spelling of a configured mode.
func autoMode(m string) string {
	if m == "auto" {
		return ""
	}
	return m
}

// start runs w until ctx ends or stop is called, sending a failure to errc.
func (w *namedWatcher) start(ctx context.Context, out chan<- chain.Event, errc chan<- error) {
	wctx, cancel := context.WithCancel(ctx)
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		if err := w.Run(wctx, out); err != nil && wctx.Err() == nil {
			select {
			case errc <- fmt.Errorf("%s watcher: %w", w.name, err):
			default:
			}
		}
	}()
}

// stop ends a started watcher's Run and releases it.
func (w *namedWatcher) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
	w.Close()
}

// runWatchers runs the watchers, and the signal tracer, until ctx ends, swapping in new
// watchers when a central rule set changes their rules. A watcher that fails stops the
// agent: running blind in silence is what a tripwire must not do.
func (a *Agent) runWatchers(ctx context.Context) error {
	errc := make(chan error, 1)
	for _, w := range a.current() {
		w.start(ctx, a.events, errc)
	}
	defer func() {
		for _, w := range a.current() {
			w.stop()
		}
	}()
	if a.signals != nil {
		sigDone := make(chan struct{})
		defer func() { <-sigDone }()
		go func() {
			defer close(sigDone)
			// After ctx ends, what is already in the ring buffer (the SIGTERM that
			// ended it) is still read, for up to 200 ms.
			if err := a.signals.Run(ctx, 200*time.Millisecond, a.recordSignal); err != nil {
				a.logger.Error("signal tracer stopped", "err", err)
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case rs := <-a.rulesC:
			a.applyRuleSet(ctx, rs, errc)
		}
	}
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
