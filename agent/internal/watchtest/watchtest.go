// Package watchtest is what the watcher packages' tests share: running a watcher for
// the length of a test and waiting for the events it sends, and the rule that a kernel
// test skips only outside CI.
package watchtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// Watcher is what a watcher offers a test: Run until ctx ends.
type Watcher interface {
	Run(ctx context.Context, out chan<- chain.Event) error
}

// Sink collects what a running watcher sends.
type Sink struct {
	Out chan chain.Event
}

// Run runs w until the test ends and fails the test if Run fails.
func Run(t *testing.T, w Watcher) *Sink {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sink{Out: make(chan chain.Event, 256)}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, s.Out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// Until collects events until one satisfies stop, failing the test after timeout.
func (s *Sink) Until(t *testing.T, timeout time.Duration, stop func(chain.Event) bool) []chain.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var got []chain.Event
	for {
		select {
		case ev := <-s.Out:
			got = append(got, ev)
			if stop(ev) {
				return got
			}
		case <-deadline.C:
			t.Fatalf("no matching event within %v; got %d: %+v", timeout, len(got), got)
			return nil
		}
	}
}

// RequireRoot skips a kernel test for an unprivileged developer, and fails it in CI
// (CI runs as root). why names the privilege, e.g. "CAP_SYS_ADMIN for fanotify".
func RequireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skip("needs root (" + why + "); run as root, or set CI to make this a failure")
	}
	t.Fatal("needs root (" + why + "), and CI is set")
}
