package watcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// Watcher modes, as FileWatcher.Mode and chain.Event.Source spell them.
const (
	ModeFanotify = "fanotify"
	ModeFsnotify = "fsnotify"
)

// Operations a file event can carry in chain.Event.Op.
const (
	OpRead       = "read"        // fanotify: the file was read
	OpWrite      = "write"       // the file was written (fanotify: FAN_MODIFY; fsnotify: Write)
	OpOpen       = "open"        // fanotify: opened, then closed or held, with no read or write seen
	OpCloseWrite = "close_write" // fanotify: opened for writing and closed with no write seen (e.g. touch)
	OpExec       = "exec"        // fanotify: the file was executed (execve of it)
	OpCreate     = "create"      // the path was created (fanotify: a hard link to a watched file too)
	OpRemove     = "remove"      // the path was removed
	OpRename     = "rename"      // the path was renamed; fanotify names both ends in Path as "old -> new"
	OpChmod      = "chmod"       // attributes changed: mode, owner, times, or (fanotify) the link count
)

// RenameArrow joins the old and the new path of an OpRename event in chain.Event.Path
// until the event has a field of its own for the old path.
const RenameArrow = " -> "

// Defaults for Options.
const (
	DefaultCoalesceWindow = 250 * time.Millisecond
	DefaultBuffer         = 8192
	DefaultRescan         = time.Second
	DefaultBurstWindow    = 5 * time.Second
)

// FileRule is one file tripwire as configured: any access to one of Paths (a file, or a
// directory and everything under it, including subdirectories created later) raises an
// event named Name.
type FileRule struct {
	Name     string
	Severity string
	// Paths are absolute. A path that does not exist yet is watched from the moment it
	// appears (checked every Options.Rescan).
	Paths []string
}

// FileWatcher watches the paths of a set of file rules.
//
// Its watches are in place from the moment NewFileWatcher returns; Run turns what they
// see into events. Mode, Degraded and Lost are safe to call from any goroutine at any
// time. Run may be called once; Close releases the watches of a watcher whose Run is
// never called (and is harmless after Run).
type FileWatcher interface {
	// Run watches until ctx ends, sending events to out. It returns nil when ctx is
	// done, or an error when the watcher cannot go on. In either case the watches are
	// released when it returns. Run never closes out. A send to out waits for the
	// consumer (events meanwhile queue, then count as lost), so drain out promptly.
	Run(ctx context.Context, out chan<- chain.Event) error
	// Mode is ModeFanotify or ModeFsnotify.
	Mode() string
	// Degraded is "" when the mode sees all it is meant to, and otherwise says, for an
	// operator, what this watcher does not see and why.
	Degraded() string
	// Lost is the number of events lost so far. A kernel queue overflow counts once
	// although it stands for at least one event (see Loss.AtLeast).
	Lost() uint64
	// Close releases the watches. It is safe to call more than once and concurrently
	// with Run, which then returns.
	Close() error
}

// Loss reports events a watcher could not deliver.
type Loss struct {
	Source string // the watcher mode
	Reason string // LossKernelOverflow, LossBufferFull or LossShutdown
	Count  uint64 // events lost
	// AtLeast says Count is a lower bound: the kernel reported an overflow without
	// saying how many events it dropped.
	AtLeast bool
}

// Reasons for a Loss.
const (
	// LossKernelOverflow: the kernel's queue (fanotify or inotify) overflowed.
	LossKernelOverflow = "kernel_queue_overflow"
	// LossBufferFull: the watcher's queue between the kernel reader and Run was full,
	// usually because out was not drained or Run had not started.
	LossBufferFull = "buffer_full"
	// LossShutdown: events still being coalesced when Run ended could not be sent.
	LossShutdown = "shutdown"
)

// Options tune NewFileWatcher. The zero value is valid.
type Options struct {
	// ForceMode is "" or "auto" (fanotify, falling back to fsnotify), ModeFanotify
	// (fail if fanotify cannot be used) or ModeFsnotify.
	ForceMode string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// ExcludePID is a process whose accesses are ignored: the agent itself, so that its
	// own reads (of /etc/passwd to resolve user names, say) raise no events. 0 means
	// os.Getpid(); a negative value excludes nothing.
	ExcludePID int
	// OnLoss, if set, is called from Run's goroutine, in order with the events sent to
	// out, whenever events were lost; the pipeline writes it into the chain as a gap.
	// It must not block for long.
	OnLoss func(Loss)
	// CoalesceWindow bounds how long the first read (or write) of an access is held to
	// count the reads (writes) that follow it before it is sent; the event is sent
	// earlier if the file is closed. Default DefaultCoalesceWindow.
	CoalesceWindow time.Duration
	// Buffer is the number of kernel events queued between the kernel reader and Run.
	// Default DefaultBuffer.
	Buffer int
	// BurstWindow is how long repeats of one operation by one process on one file are
	// counted rather than sent after the first event: when it ends they are sent as one
	// event whose Count is their sum. Default DefaultBurstWindow.
	BurstWindow time.Duration
	// Rescan is how often watched paths are checked for having appeared or been
	// replaced (e.g. /etc/passwd rewritten through a rename) and watched anew. Default
	// DefaultRescan.
	Rescan time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.ExcludePID == 0 {
		o.ExcludePID = os.Getpid()
	}
	if o.CoalesceWindow <= 0 {
		o.CoalesceWindow = DefaultCoalesceWindow
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Rescan <= 0 {
		o.Rescan = DefaultRescan
	}
	if o.BurstWindow <= 0 {
		o.BurstWindow = DefaultBurstWindow
	}
	return o
}

// ErrNotSupported is returned (wrapped) when a mode cannot run on this platform.
var ErrNotSupported = errors.New("not supported on this platform")

// ErrClosed is returned by Run on a watcher that was closed or has already run.
var ErrClosed = errors.New("file watcher closed")

// MarkError says a watched path could not be marked for fanotify.
type MarkError struct {
	Path string
	Err  error
}

// Error implements error.
func (e *MarkError) Error() string { return fmt.Sprintf("marking %s for fanotify: %v", e.Path, e.Err) }

// Unwrap returns the system error.
func (e *MarkError) Unwrap() error { return e.Err }

// missingNoProcess lists the process fields fsnotify can never fill.
var missingNoProcess = []string{"pid", "ppid", "uid", "user", "exe", "cmdline"}

// NewFileWatcher validates rules, picks a mode according to opts.ForceMode and sets the
// watches, so that monitoring is in place when it returns. In auto mode a fanotify
// failure (not root, not Linux, kernel without fanotify) is logged and fsnotify used
// instead; Degraded then says why.
func NewFileWatcher(rules []FileRule, opts Options) (FileWatcher, error) {
	opts = opts.withDefaults()
	targets, err := buildTargets(rules)
	if err != nil {
		return nil, err
	}
	switch opts.ForceMode {
	case ModeFsnotify:
		return fsnotifyOrNil(newFsnotifyWatcher(targets, opts, ""))
	case ModeFanotify:
		w, err := newFanotifyWatcher(targets, opts)
		if err != nil {
			return nil, fmt.Errorf("starting fanotify watcher: %w", err)
		}
		return w, nil
	case "", "auto":
		w, err := newFanotifyWatcher(targets, opts)
		if err == nil {
			return w, nil
		}
		opts.Logger.Warn("fanotify unavailable, falling back to fsnotify", "err", err)
		return fsnotifyOrNil(newFsnotifyWatcher(targets, opts, "fanotify unavailable ("+err.Error()+")"))
	default:
		return nil, fmt.Errorf("choosing file watcher mode: %q is not one of auto, %s, %s", opts.ForceMode, ModeFanotify, ModeFsnotify)
	}
}

// fsnotifyOrNil keeps a failed constructor's nil pointer out of the interface.
func fsnotifyOrNil(w *fsnWatcher, err error) (FileWatcher, error) {
	if err != nil {
		return nil, err
	}
	return w, nil
}
