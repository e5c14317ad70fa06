//go:build !linux

package sigwatch

import (
	"context"
	"errors"
	"time"
)

// Watcher is not available on this platform.
type Watcher struct{}

// Start reports that signal senders cannot be seen on this platform.
func Start(pid int, pinDir string) (*Watcher, error) {
	return nil, errors.New("signal senders can only be traced on Linux (eBPF)")
}

func (w *Watcher) Previous() []Signal                                                  { return nil }
func (w *Watcher) Run(ctx context.Context, drain time.Duration, fn func(Signal)) error { return nil }
func (w *Watcher) Forget(s Signal) error                                               { return nil }
func (w *Watcher) Lost() uint64                                                        { return 0 }
func (w *Watcher) Close() error                                                        { return nil }

// Fatal is never true where no signal is traced.
func (s Signal) Fatal() bool { return false }
