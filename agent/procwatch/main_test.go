package procwatch

import (
	"testing"

	"github.com/tripwire-project/tripwire/agent/internal/watchtest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sink collects what a running watcher sends.
type sink = watchtest.Sink

// run runs w until the test ends and fails the test if Run fails.
func run(t *testing.T, w Watcher) *sink { return watchtest.Run(t, w) }
