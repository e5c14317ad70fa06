package netwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// Modes, as Watcher.Mode and chain.Event.Source spell them. ModeDecoy is also a
// Rule.Mode and a chain.Event.Mode.
const (
	ModeEBPF     = "ebpf"
	ModeSockDiag = "sockdiag"
	ModeDecoy    = "decoy"
)

// ModeMonitor is the Rule.Mode (and chain.Event.Mode) of a rule that watches existing
// services' connections. An empty Rule.Mode means ModeMonitor.
const ModeMonitor = "monitor"

// Directions of a monitored connection, as Rule.Direction and chain.Event.Direction
// spell them. DirectionBoth is only a Rule.Direction.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
	DirectionBoth     = "both"
)

// Reason of a Loss for connections a decoy refused because MaxDecoyConns were being
// served; the other reasons are agent/watcher's.
const LossDecoyBusy = "decoy_busy"

// Defaults and bounds of Options.
const (
	DefaultPollInterval   = 200 * time.Millisecond
	MaxPollInterval       = 250 * time.Millisecond
	DefaultFirstBytes     = 256
	MaxFirstBytes         = 4096
	DefaultFirstBytesWait = 300 * time.Millisecond
	MaxFirstBytesWait     = 5 * time.Second
	// MaxDecoyConns bounds the decoy connections served at once, over all decoys.
	MaxDecoyConns = 64
	// queueLen is the number of events held between the watchers and Run.
	queueLen = 4096
)

// Rule is one network tripwire as configured.
type Rule struct {
	Name, Severity string
	Ports          []uint16
	// Mode is ModeDecoy (the agent listens on Ports itself and reports every caller) or
	// ModeMonitor ("" too: connections to or from existing services on Ports).
	Mode string
	// Direction is, for a monitor rule, DirectionInbound (default: connections accepted
	// on a local port in Ports), DirectionOutbound (connections made from this host to a
	// remote port in Ports) or DirectionBoth.
	Direction string
	// Address is, for a decoy rule, the IP address to listen on; "" listens on every
	// address, IPv4 and IPv6.
	Address string
}

// Options tune New. The zero value is valid.
type Options struct {
	// ForceMode picks the monitor mode: "" or "auto" (ebpf, falling back to sockdiag),
	// ModeEBPF or ModeSockDiag (fail if that mode cannot run). Decoys need no mode.
	ForceMode string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// PollInterval is how often sockdiag mode lists the host's sockets. Default
	// DefaultPollInterval, at most MaxPollInterval.
	PollInterval time.Duration
	// FirstBytes is how many bytes of what a decoy's caller sends first are kept.
	// Default DefaultFirstBytes, at most MaxFirstBytes.
	FirstBytes int
	// FirstBytesWait is how long a decoy waits for those bytes before it records the
	// connection and closes it. Default DefaultFirstBytesWait, at most
	// MaxFirstBytesWait.
	FirstBytesWait time.Duration
	// OnLoss, if set, is called from Run's goroutine, in order with the events sent to
	// out, whenever events were lost. It must not block for long.
	OnLoss func(Loss)
}

// Loss reports events the watcher could not deliver. Its Reason is one of agent/watcher's
// (LossKernelOverflow: the eBPF ring buffer was full; LossBufferFull; LossShutdown) or
// LossDecoyBusy.
type Loss = watcher.Loss

// Watcher watches the ports of a set of network rules.
//
// Its listeners and kernel hooks are in place from the moment New returns, and
// connections are taken from then on; Run delivers them as events. Mode, Degraded and
// Lost are safe to call from any goroutine at any time. Run may be called once; Close
// releases everything of a watcher whose Run is never called (and is harmless after
// Run).
type Watcher interface {
	// Run delivers events until ctx ends, sending them to out. It returns nil when ctx
	// is done, or an error when the watcher cannot go on; either way everything is
	// released when it returns. Run never closes out. A send to out waits for the
	// consumer (events meanwhile queue, then count as lost), so drain out promptly.
	Run(ctx context.Context, out chan<- chain.Event) error
	// Mode is the monitor mode in use (ModeEBPF, ModeSockDiag, or ModePoll off Linux), or ModeDecoy when no
	// monitor rule is watched.
	Mode() string
	// Degraded is "" when the watcher sees all it is meant to, and otherwise says, for
	// an operator, what it does not see and why.
	Degraded() string
	// Lost is the number of events lost so far.
	Lost() uint64
	// Close releases listeners and kernel hooks. It is safe to call more than once and
	// concurrently with Run, which then returns.
	Close() error
}

// ErrNotSupported is returned (wrapped) when a monitor mode cannot run on this platform.
var ErrNotSupported = errors.New("not supported on this platform")

// ErrClosed is returned by Run on a watcher that was closed or has already run.
var ErrClosed = errors.New("network watcher closed")

// BindError says a decoy could not listen on its port.
type BindError struct {
	Rule    string
	Port    uint16
	Address string // the address listened on
	Err     error
}

// Error implements error.
func (e *BindError) Error() string {
	return fmt.Sprintf("decoy rule %q: listening on port %d (%s): %v", e.Rule, e.Port, e.Address, e.Err)
}

// Unwrap returns the system error.
func (e *BindError) Unwrap() error { return e.Err }

// ruleRef is the part of a rule an event carries.
type ruleRef struct {
	Name, Severity string
}

// portDir is one watched (port, direction) of the monitor: the local port of an inbound
// connection, the remote port of an outbound one.
type portDir struct {
	port      uint16
	direction string // DirectionInbound or DirectionOutbound
}

// watchSet maps each monitored (port, direction) to the rules watching it.
type watchSet map[portDir][]ruleRef

// decoySpec is one port a decoy rule listens on.
type decoySpec struct {
	rule    ruleRef
	port    uint16
	address string // "" for every address
}

// plan is what a validated set of rules asks for.
type plan struct {
	decoys   []decoySpec
	watch    watchSet
	monitors []string // names of the monitor rules
	excluded []string // "rule port/direction" entries dropped for being decoy ports
}

// New validates rules, binds the decoy listeners and attaches the monitor (picked by
// opts.ForceMode), so that every tripwire is set when it returns. A port that cannot be
// bound is a *BindError naming the rule and port. In auto mode, an eBPF failure is logged
// and sockdiag used instead; Degraded then says why.
func New(rules []Rule, opts Options) (Watcher, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	p, err := buildPlan(rules)
	if err != nil {
		return nil, err
	}
	return newNetWatcher(p, opts)
}

func (o Options) withDefaults() (Options, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.FirstBytes <= 0 {
		o.FirstBytes = DefaultFirstBytes
	}
	if o.FirstBytesWait <= 0 {
		o.FirstBytesWait = DefaultFirstBytesWait
	}
	var errs []error
	if o.PollInterval > MaxPollInterval {
		errs = append(errs, fmt.Errorf("PollInterval %v is over %v", o.PollInterval, MaxPollInterval))
	}
	if o.FirstBytes > MaxFirstBytes {
		errs = append(errs, fmt.Errorf("FirstBytes %d is over %d", o.FirstBytes, MaxFirstBytes))
	}
	if o.FirstBytesWait > MaxFirstBytesWait {
		errs = append(errs, fmt.Errorf("FirstBytesWait %v is over %v", o.FirstBytesWait, MaxFirstBytesWait))
	}
	switch o.ForceMode {
	case "", "auto", ModeEBPF, ModeSockDiag:
	default:
		errs = append(errs, fmt.Errorf("ForceMode %q is not one of auto, %s, %s", o.ForceMode, ModeEBPF, ModeSockDiag))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("validating network watcher options: %w", err)
	}
	return o, nil
}

// buildPlan validates rules, reporting every problem at once, and works out the decoys
// to open and the (port, direction) pairs to monitor. A decoy's port is never monitored
// inbound: the decoy already reports its callers.
func buildPlan(rules []Rule) (plan, error) {
	var errs []error
	p := plan{watch: watchSet{}}
	decoyPorts := map[uint16]bool{}
	for i, r := range rules {
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("network rule %d: name is required", i))
		}
		if len(r.Ports) == 0 {
			errs = append(errs, fmt.Errorf("network rule %q: at least one port is required", r.Name))
		}
		if slices.Contains(r.Ports, 0) {
			errs = append(errs, fmt.Errorf("network rule %q: port 0 is not a port", r.Name))
		}
		ref := ruleRef{Name: r.Name, Severity: r.Severity}
		switch r.Mode {
		case ModeDecoy:
			if r.Direction != "" && r.Direction != DirectionInbound {
				errs = append(errs, fmt.Errorf("network rule %q: direction %q applies to monitor rules only", r.Name, r.Direction))
			}
			if r.Address != "" {
				if _, err := netip.ParseAddr(r.Address); err != nil {
					errs = append(errs, fmt.Errorf("network rule %q: address %q is not an IP address", r.Name, r.Address))
				}
			}
			for _, port := range r.Ports {
				p.decoys = append(p.decoys, decoySpec{rule: ref, port: port, address: r.Address})
				decoyPorts[port] = true
			}
		case ModeMonitor, "":
			if r.Address != "" {
				errs = append(errs, fmt.Errorf("network rule %q: address applies to decoy rules only", r.Name))
			}
			dirs, err := directions(r.Direction)
			if err != nil {
				errs = append(errs, fmt.Errorf("network rule %q: %w", r.Name, err))
			}
			p.monitors = append(p.monitors, r.Name)
			for _, port := range r.Ports {
				for _, d := range dirs {
					k := portDir{port: port, direction: d}
					if !slices.Contains(p.watch[k], ref) {
						p.watch[k] = append(p.watch[k], ref)
					}
				}
			}
		default:
			errs = append(errs, fmt.Errorf("network rule %q: mode %q is not one of %s, %s", r.Name, r.Mode, ModeDecoy, ModeMonitor))
		}
	}
	if len(rules) == 0 {
		errs = append(errs, errors.New("no network rules"))
	}
	if err := errors.Join(errs...); err != nil {
		return plan{}, fmt.Errorf("validating network rules: %w", err)
	}
	for k, refs := range p.watch {
		if k.direction == DirectionInbound && decoyPorts[k.port] {
			for _, r := range refs {
				p.excluded = append(p.excluded, fmt.Sprintf("%s %d/%s", r.Name, k.port, k.direction))
			}
			delete(p.watch, k)
		}
	}
	slices.Sort(p.excluded)
	return p, nil
}

// directions expands a rule's Direction.
func directions(d string) ([]string, error) {
	switch d {
	case "", DirectionInbound:
		return []string{DirectionInbound}, nil
	case DirectionOutbound:
		return []string{DirectionOutbound}, nil
	case DirectionBoth:
		return []string{DirectionInbound, DirectionOutbound}, nil
	default:
		return nil, fmt.Errorf("direction %q is not one of %s, %s, %s", d, DirectionInbound, DirectionOutbound, DirectionBoth)
	}
}

// connEvents turns one connection seen by a monitor or a decoy into an event per rule.
// local and remote are this host's and the peer's ends; v4-mapped IPv6 addresses are
// reported as IPv4.
func connEvents(refs []ruleRef, source, mode, direction string, local, remote netip.AddrPort, base chain.Event) []chain.Event {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	src, dst := remote, local
	if direction == DirectionOutbound {
		src, dst = local, remote
	}
	base.Type = chain.TypeNetwork
	base.Source = source
	base.Mode = mode
	base.Direction = direction
	base.Protocol = "tcp"
	if remote.Addr().Is6() {
		base.Protocol = "tcp6"
	}
	base.SrcIP, base.SrcPort = src.Addr().String(), src.Port()
	base.DstIP, base.DstPort = dst.Addr().String(), dst.Port()
	base.Count = 1
	out := make([]chain.Event, 0, len(refs))
	for _, r := range refs {
		ev := base
		ev.Rule, ev.Severity = r.Name, r.Severity
		ev.Missing = slices.Clone(base.Missing)
		out = append(out, ev)
	}
	return out
}
