package procwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// Watcher modes, as Watcher.Mode and chain.Event.Source spell them.
const (
	ModeEBPF    = "ebpf"
	ModeNetlink = "netlink"
	ModeProc    = "proc"
)

// Defaults for Options.
const (
	DefaultPollInterval = 100 * time.Millisecond
	// queueLen is the number of exec records queued between the kernel reader and Run.
	queueLen = 4096
)

// Rule is one process tripwire. An exec matches it if any of its criteria matches; a
// rule needs at least one criterion.
type Rule struct {
	Name, Severity string
	// Names are program names, matched against the base name of the executed file
	// (or of the executable /proc names), against the executables the names resolve
	// to through the standard PATH, and, when the file name is unknown, the kernel's
	// 15-byte task name (comm).
	Names []string
	// Paths are absolute executable paths; symlinks are resolved on both sides.
	Paths []string
	// Cmdline are globs over the whole command line (argv joined by single spaces):
	// '*' matches any run of bytes including '/' and spaces, '?' one byte, '\' quotes
	// the next byte; everything else matches itself.
	Cmdline []string
	// CmdlineRegex are matched anywhere in the command line (anchor them to match it
	// whole).
	CmdlineRegex []*regexp.Regexp
	// MatchContent also matches an exec of a renamed or copied binary whose content
	// (SHA-256) equals one of this rule's Names (resolved through the standard PATH)
	// or Paths, as they were when New ran.
	MatchContent bool
}

// Options tune New. The zero value is valid.
type Options struct {
	// ForceMode is "" (auto: ebpf, then netlink, then proc) or one mode, which makes
	// New fail if that mode cannot run.
	ForceMode string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// ExcludePID is a process whose execs are ignored: 0 means os.Getpid(), the agent
	// itself (its children are watched); a negative value excludes nothing.
	ExcludePID int
	// PollInterval is how often proc mode lists processes. Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// OnLoss, if set, is called from Run's goroutine whenever events were lost; the
	// pipeline writes it into the chain as a gap. It must not block for long.
	OnLoss func(Loss)
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.ExcludePID == 0 {
		o.ExcludePID = os.Getpid()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	return o
}

// Loss reports events a watcher could not deliver; Source is the mode.
type Loss = watcher.Loss

// Watcher watches process executions.
//
// It watches from the moment New returns; Run turns what it sees into events. Mode,
// Degraded and Lost are safe to call from any goroutine at any time. Run may be called
// once; Close releases the kernel resources of a watcher whose Run is never called (and
// is harmless after Run).
type Watcher interface {
	// Run watches until ctx ends, sending events to out. It returns nil when ctx is
	// done, or an error when the watcher cannot go on; either way the kernel
	// resources are released when it returns. Run never closes out. A send to out
	// waits for the consumer (execs meanwhile queue, then count as lost).
	Run(ctx context.Context, out chan<- chain.Event) error
	// Mode is ModeEBPF, ModeNetlink or ModeProc.
	Mode() string
	// Degraded is "" when the mode sees all it is meant to, and otherwise says, for an
	// operator, what this watcher misses and why.
	Degraded() string
	// Lost is the number of events lost so far.
	Lost() uint64
	// Close releases the kernel resources. It is safe to call more than once and
	// concurrently with Run, which then returns.
	Close() error
}

// ErrNotSupported is returned (wrapped) when a mode cannot run on this platform.
var ErrNotSupported = errors.New("not supported on this platform")

// ErrClosed is returned by Run on a watcher that was closed or has already run.
var ErrClosed = errors.New("process watcher closed")

// New validates rules, prepares the matcher (resolving and hashing watched programs),
// picks a mode according to opts.ForceMode and starts watching. In auto mode a mode
// that cannot run is logged and the next one tried; Degraded then says why.
func New(rules []Rule, opts Options) (Watcher, error) {
	opts = opts.withDefaults()
	modes := []string{ModeEBPF, ModeNetlink, ModeProc}
	switch opts.ForceMode {
	case "":
	case ModeEBPF, ModeNetlink, ModeProc:
		modes = []string{opts.ForceMode}
	default:
		return nil, fmt.Errorf("choosing process watcher mode: %q is not one of \"\" (auto), %s, %s, %s", opts.ForceMode, ModeEBPF, ModeNetlink, ModeProc)
	}
	m, err := newMatcher(rules, standardPath)
	if err != nil {
		return nil, err
	}
	en := &enricher{hashing: m.hashing, hashes: newHashCache()}
	var why []string
	for _, mode := range modes {
		src, err := openSource(mode, opts, en)
		if err == nil {
			return newEngine(src, m, en, opts, strings.Join(why, "; ")), nil
		}
		if opts.ForceMode != "" {
			return nil, fmt.Errorf("starting %s process watcher: %w", mode, err)
		}
		opts.Logger.Warn("process watcher mode unavailable", "mode", mode, "err", err)
		why = append(why, fmt.Sprintf("%s unavailable (%v)", mode, err))
	}
	return nil, fmt.Errorf("starting process watcher: %s", strings.Join(why, "; "))
}
