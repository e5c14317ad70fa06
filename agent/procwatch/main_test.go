package procwatch

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sink collects what a running watcher sends.
type sink struct {
	out chan chain.Event
}

// run runs w until the test ends and fails the test if Run fails.
func run(t *testing.T, w Watcher) *sink {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &sink{out: make(chan chain.Event, 256)}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, s.out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// until collects events until one satisfies stop, failing the test after timeout.
func (s *sink) until(t *testing.T, timeout time.Duration, stop func(chain.Event) bool) []chain.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var got []chain.Event
	for {
		select {
		case ev := <-s.out:
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
