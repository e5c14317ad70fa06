// Package agent composes the tripwire host daemon: watchers feed a pipeline that writes
// every event into the hash-chained audit log (the durable queue) before anything else,
// a shipper streams the chain to the collector, and /healthz reports on all of it. The
// tripwire binary and the end-to-end tests start it here.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/agent/healthz"
	"github.com/tripwire-project/tripwire/agent/redact"
	"github.com/tripwire-project/tripwire/agent/sigwatch"
	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/internal/version"
	"github.com/tripwire-project/tripwire/proto/chain"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// pipelineBatch is the most events written to the chain with one fsync.
const pipelineBatch = 1024

// shutdownGrace is how long a stopping agent keeps retrying an unwritable chain.
const shutdownGrace = 5 * time.Second

// Agent is a configured, started-up agent: its watchers are already watching when New
// returns, so nothing that happens after New is missed.
type Agent struct {
	cfg      *config.Config
	logger   *slog.Logger
	chain    *durableChain
	signals  *sigwatch.Watcher // nil when signal senders cannot be traced here
	sigErr   string            // why signals is nil
	redactor *redact.Redactor
	filter   atomic.Pointer[filter] // the one for the rules in force
	metrics  *agentMetrics
	rulesC   chan *tripwirev1.RuleSet // central rule sets pushed, for runWatchers

	mu          sync.Mutex
	set         watchSet           // the rules in force and their watchers
	everWatched []*namedWatcher    // retired watchers too, for their losses
	suppressed  sync.Map           // allowlisted hits by rule, across rule changes
	notices     chan chain.Payload // signal records, merged into the chain by the pipeline
	tls         *transport.ClientTLS
	shipper     *transport.Shipper
	healthL     net.Listener
	events      chan chain.Event
	started     time.Time

	signalsLostSeen uint64 // pipeline goroutine only

	lastAlert  atomic.Int64 // unix nanos of the last event written
	chainErr   atomic.Value // string: why the chain cannot be written now, "" when it can
	stoppingAt atomic.Int64 // unix nanos when shutdown began
}

// New opens the audit chain, puts the watchers in place and binds /healthz. Errors name
// what failed; nothing is left running on error.
func New(cfg *config.Config, logger *slog.Logger) (_ *Agent, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, logger: logger, events: make(chan chain.Event, 8192), notices: make(chan chain.Payload, 64),
		rulesC: make(chan *tripwirev1.RuleSet, 1), started: time.Now()}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	a.tls, err = transport.LoadClientTLS(cfg.Collector.CA, cfg.Collector.Cert, cfg.Collector.Key, serverName(cfg.Collector))
	if err != nil {
		return nil, err
	}
	a.chain, err = openChain(cfg.Audit.Dir, audit.Options{
		MaxSegmentBytes: int64(cfg.Audit.MaxSegmentMB) << 20,
		Logger:          logger.With("component", "audit"),
	})
	if err != nil {
		return nil, fmt.Errorf("opening audit chain in %s: %w", cfg.Audit.Dir, err)
	}
	closers = append(closers, func() { a.chain.Close() })

	if a.redactor, err = redact.New(cfg.Redact.Patterns, cfg.Redact.NoDefaults); err != nil {
		return nil, err
	}
	central, err := loadCentralRules(cfg.Audit.Dir)
	if err != nil {
		// A damaged copy is not a reason to run blind: start on the local rules; the
		// collector pushes the set again on connect.
		logger.Error("ignoring the persisted central rules", "err", err)
	}
	rules, shadowed := merge(cfg.Rules, central.Rules)
	if len(shadowed) > 0 {
		logger.Warn("local rules take precedence over central rules of the same name", "names", shadowed)
	}
	a.filter.Store(newFilter(rules, a.redactor, &a.suppressed))
	merged := *cfg
	merged.Rules = rules
	watchers, err := newWatchers(&merged, logger)
	if err != nil {
		return nil, err
	}
	a.set = watchSet{central: central, rules: rules, watchers: watchers}
	a.everWatched = slices.Clone(watchers)
	closers = append(closers, func() {
		for _, w := range watchers {
			w.Close()
		}
	})
	for _, w := range watchers {
		if d := w.Degraded(); d != "" {
			logger.Warn("watcher degraded", "watcher", w.name, "mode", w.Mode(), "reason", d)
		}
	}
	if a.signals, err = sigwatch.Start(os.Getpid(), ""); err != nil {
		a.sigErr = err.Error()
		logger.Warn("signal senders will not be recorded", "err", err)
	} else {
		closers = append(closers, func() { a.signals.Close() })
	}
	a.metrics = newAgentMetrics(a)

	a.healthL, err = net.Listen("tcp", cfg.Healthz)
	if err != nil {
		return nil, fmt.Errorf("listening for /healthz on %s: %w", cfg.Healthz, err)
	}
	closers = append(closers, func() { a.healthL.Close() })

	a.shipper = transport.New(a.chain, transport.Options{
		Address: cfg.Collector.Address, TLS: a.tls.Config(), Hostname: cfg.Host,
		Version: version.Version, Kernel: kernelRelease(),
		Watchers: a.watcherStatus, Logger: logger.With("component", "shipper"),
		OnRules: a.onRules, Renewer: a.tls,
	})
	return a, nil
}

// HealthzAddr is the address /healthz listens on.
func (a *Agent) HealthzAddr() string { return a.healthL.Addr().String() }

// ReloadTLS re-reads the agent's certificate and key (SIGHUP) and reconnects at once
// with them: nothing recorded meanwhile is lost, the chain resends it.
func (a *Agent) ReloadTLS() error {
	if err := a.tls.Reload(); err != nil {
		return err
	}
	a.shipper.Reconnect()
	return nil
}

func (a *Agent) watcherStatus() []*tripwirev1.WatcherStatus {
	var out []*tripwirev1.WatcherStatus
	for _, r := range a.watcherReports() {
		out = append(out, &tripwirev1.WatcherStatus{Name: r.Name, Mode: r.Mode, DegradedReason: r.Degraded})
	}
	return out
}

// watcherReports says how each watcher runs, the signal tracer included.
func (a *Agent) watcherReports() []healthz.WatcherReport {
	var out []healthz.WatcherReport
	for _, w := range a.current() {
		out = append(out, healthz.WatcherReport{Name: w.name, Mode: w.Mode(), Degraded: w.Degraded()})
	}
	if a.signals != nil {
		out = append(out, healthz.WatcherReport{Name: "signals", Mode: "ebpf"})
	} else {
		out = append(out, healthz.WatcherReport{Name: "signals", Mode: "none", Degraded: a.sigErr})
	}
	return out
}

// modes describes every watcher's mode for the start notice.
func (a *Agent) modes() string {
	var parts []string
	for _, r := range a.watcherReports() {
		p := r.Name + "=" + r.Mode
		if r.Degraded != "" {
			p += " (degraded: " + r.Degraded + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// Run records the start in the chain, then watches, writes and ships until ctx ends, and
// records a clean stop as the chain's last entry.
func (a *Agent) Run(ctx context.Context) error {
	defer a.chain.Close()
	if err := a.chain.Append(chain.Payload{Kind: chain.KindAgent, Notice: &chain.Notice{
		What:    "agent_started",
		Message: fmt.Sprintf("tripwire %s started; watchers: %s", version.Version, a.modes()),
	}}); err != nil {
		return fmt.Errorf("recording start in the audit chain: %w", err)
	}
	if err := a.recordPreviousSignals(); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", healthz.Handler(a.report))
	mux.Handle("/metrics", a.metrics.handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	g, gctx := errgroup.WithContext(ctx)
	pipelineDone := make(chan struct{})
	g.Go(func() error { // watchers stop only after ctx ends, then the pipeline drains
		defer close(a.events)
		return a.runWatchers(watchCtx)
	})
	g.Go(func() error {
		defer close(pipelineDone)
		return a.pipeline()
	})
	g.Go(func() error { return a.shipper.Run(gctx) })
	g.Go(func() error {
		if err := hs.Serve(a.healthL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving /healthz: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		a.stoppingAt.Store(time.Now().UnixNano())
		stopWatching()
		<-pipelineDone
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return hs.Shutdown(shutdown)
	})
	err := g.Wait()
	what, msg := "agent_stopped", "clean shutdown"
	if err != nil {
		what, msg = "agent_failed", err.Error()
	}
	if aerr := a.chain.Append(chain.Payload{Kind: chain.KindAgent, Notice: &chain.Notice{What: what, Message: msg}}); aerr != nil {
		a.logger.Error("recording stop in the audit chain", "err", aerr)
	}
	return err
}

// pipeline writes watcher events and signal records into the chain, as many as are
// waiting per fsync, after the filter (allowlists, redaction), and records watcher
// losses as gap entries, checked with every write and every second.
func (a *Agent) pipeline() error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	buf := make([]chain.Payload, 0, pipelineBatch+16)
	event := func(ev chain.Event) {
		a.metrics.seen(ev)
		if a.filter.Load().pass(&ev) {
			buf = append(buf, chain.Payload{Kind: chain.KindEvent, Time: time.Now().UTC(), Event: &ev})
		}
	}
	for {
		buf = buf[:0]
		select {
		case ev, ok := <-a.events:
			if !ok {
				// Losses and signals at shutdown come after the last event.
				buf = a.drainNotices(a.gaps(buf))
				if len(buf) > 0 {
					return a.appendDurably(buf)
				}
				return nil
			}
			event(ev)
		drain:
			for len(buf) < pipelineBatch {
				select {
				case more, ok := <-a.events:
					if !ok {
						break drain
					}
					event(more)
				default:
					break drain
				}
			}
		case n := <-a.notices:
			buf = append(buf, n)
		case <-tick.C:
		}
		if buf = a.gaps(buf); len(buf) == 0 {
			continue
		}
		if err := a.appendDurably(buf); err != nil {
			// Stopping with an unwritable chain: what is still queued goes to the
			// journal, the last place it can be recorded.
			for ev := range a.events {
				if b, jerr := json.Marshal(ev); jerr == nil {
					a.logger.Error("event not recorded in the audit chain", "event", string(b))
				}
			}
			return err
		}
		if slices.ContainsFunc(buf, func(p chain.Payload) bool { return p.Kind == chain.KindEvent }) {
			a.lastAlert.Store(time.Now().UnixNano())
		}
	}
}

// gaps appends a gap entry for each watcher that lost events since the last look.
func (a *Agent) gaps(buf []chain.Payload) []chain.Payload {
	for _, w := range a.tracked() {
		if lost := w.Lost(); lost > w.lostSeen {
			buf = append(buf, chain.Payload{Kind: chain.KindGap, Notice: &chain.Notice{
				What: "watcher_loss", Lost: lost - w.lostSeen,
				Message: fmt.Sprintf("the %s watcher (%s) lost events: kernel queue or ring buffer overflow, full buffer or shutdown", w.name, w.Mode()),
			}})
			w.lostSeen = lost
		}
	}
	if a.signals != nil {
		if lost := a.signals.Lost(); lost > a.signalsLostSeen {
			buf = append(buf, chain.Payload{Kind: chain.KindGap, Notice: &chain.Notice{
				What: "watcher_loss", Lost: lost - a.signalsLostSeen,
				Message: "the signal tracer's ring buffer overflowed: signals sent to the agent went unrecorded",
			}})
			a.signalsLostSeen = lost
		}
	}
	return buf
}

func (a *Agent) drainNotices(buf []chain.Payload) []chain.Payload {
	for {
		select {
		case n := <-a.notices:
			buf = append(buf, n)
		default:
			return buf
		}
	}
}

// appendDurably appends payloads, and when the chain cannot be written (a full disk, an
// I/O error) keeps them and retries, reopening the chain, until it can. Meanwhile events
// back up in the watcher, whose overflow is counted and recorded as a gap once writing
// works again: a write failure delays, it never loses anything unrecorded. The outage
// itself is recorded in the chain before the payloads that waited for it.
//
// A failed append may still have left some of its entries whole on disk (a full disk
// midway through, an fsync error after the write); reopening keeps those, so before
// each retry the payloads already in the chain are dropped rather than written twice.
func (a *Agent) appendDurably(payloads []chain.Payload) error {
	headBefore, _ := a.chain.Head()
	err := a.chain.Append(payloads...)
	if err == nil {
		return nil
	}
	since := time.Now()
	a.chainErr.Store(err.Error())
	a.logger.Error("audit chain not writable: holding events and retrying", "err", err, "held", len(payloads))
	for attempt := 1; ; attempt++ {
		time.Sleep(min(time.Duration(attempt)*100*time.Millisecond, 2*time.Second))
		if at := a.stoppingAt.Load(); at != 0 && time.Since(time.Unix(0, at)) > shutdownGrace {
			// Stopping, and the chain still cannot be written: the journal is the last
			// place these events can be recorded.
			for _, p := range payloads {
				if b, jerr := json.Marshal(p); jerr == nil {
					a.logger.Error("event not recorded in the audit chain", "payload", string(b))
				}
			}
			return fmt.Errorf("stopping with %d payloads not written to the audit chain: %w", len(payloads), err)
		}
		if rerr := a.chain.Reopen(); rerr != nil {
			a.chainErr.Store(rerr.Error())
			continue
		}
		written, rerr := a.chain.countHeld(headBefore)
		if rerr != nil {
			a.chainErr.Store(rerr.Error())
			continue
		}
		payloads = payloads[min(written, len(payloads)):]
		headBefore, _ = a.chain.Head()
		outage := chain.Payload{Kind: chain.KindAgent, Notice: &chain.Notice{
			What:    "audit_write_failed",
			Message: fmt.Sprintf("the audit chain could not be written for %s: %v", time.Since(since).Round(time.Millisecond), err),
		}}
		if err2 := a.chain.Append(append([]chain.Payload{outage}, payloads...)...); err2 != nil {
			a.chainErr.Store(err2.Error())
			continue
		}
		a.chainErr.Store("")
		a.logger.Info("audit chain writable again", "after", time.Since(since).Round(time.Millisecond), "held", len(payloads))
		return nil
	}
}

func (a *Agent) report() healthz.Report {
	head, _ := a.chain.Head()
	acked := a.chain.Acked()
	r := healthz.Report{
		Status: "ok", Version: version.Version, Host: a.cfg.Host,
		UptimeS: int64(time.Since(a.started).Seconds()), HeadSeq: head, AckedSeq: acked,
		QueueDepth: head - min(acked, head), AuditBytes: a.chain.SizeBytes(),
		Watchers:     a.watcherReports(),
		Suppressed:   a.filter.Load().suppressedByRule(),
		CentralRules: a.centralVersion(),
		Collector:    a.shipper.Status(),
	}
	if n := a.lastAlert.Load(); n != 0 {
		t := time.Unix(0, n).UTC()
		r.LastAlertAt = &t
	}
	for _, w := range r.Watchers {
		if w.Degraded != "" {
			r.Status = "degraded"
		}
	}
	if msg, _ := a.chainErr.Load().(string); msg != "" {
		r.Status = "degraded"
		r.AuditError = msg
	}
	if r.Certificate = a.certificateReport(); r.Certificate.RenewalOverdue {
		r.Status = "degraded"
	}
	return r
}

// certificateReport describes the client certificate in use and its renewal.
func (a *Agent) certificateReport() *healthz.CertificateReport {
	c := a.tls.Certificate()
	rs := a.shipper.RenewalStatus()
	life := c.NotAfter.Sub(c.NotBefore)
	cr := &healthz.CertificateReport{
		Serial: c.SerialNumber.Text(16), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		RenewAfter: transport.RenewAfter(c).UTC(), RenewalError: rs.LastError,
		// The collector warns at the same point (storage.CertExpiryEvent).
		RenewalOverdue: time.Until(c.NotAfter) < life/4,
	}
	if !rs.LastRenewedAt.IsZero() {
		t := rs.LastRenewedAt.UTC()
		cr.LastRenewedAt = &t
	}
	return cr
}

func serverName(c config.Collector) string {
	if c.ServerName != "" {
		return c.ServerName
	}
	host, _, err := net.SplitHostPort(c.Address)
	if err != nil {
		return c.Address
	}
	return host
}
