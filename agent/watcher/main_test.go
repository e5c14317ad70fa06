package watcher

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/internal/watchtest"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a child process for the kernel tests.
const helperEnv = "TRIPWIRE_WATCHER_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// runHelper is the child side of the kernel tests: it runs the helper named mode with
// args and exits 0, 1 on failure, or exitRefused if the kernel refused the feature.
func runHelper(mode string, args []string) int {
	f := helpers[mode]
	if f == nil {
		f = kernelHelpers[mode]
	}
	if f == nil {
		fmt.Fprintln(os.Stderr, "unknown helper", mode, args)
		return 2
	}
	if err := f(args); err != nil {
		fmt.Fprintln(os.Stderr, mode+":", err)
		if errors.Is(err, errRefused) {
			return exitRefused
		}
		return 1
	}
	return 0
}

// exitRefused is a helper's exit code when the kernel refused what it was to do.
const exitRefused = 3

var errRefused = errors.New("refused by the kernel")

// helpers are the portable child actions, each given its arguments.
var helpers = map[string]func(args []string) error{
	// readloop PATH reads 1 MiB of PATH in 4 KiB chunks through one descriptor,
	// pausing between reads as a slow reader would.
	"readloop": func(args []string) error {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, 4096)
		for i := range 256 {
			if _, err := f.ReadAt(buf, int64(i%16)*4096); err != nil {
				return err
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	},
	// openloop N PATH opens, reads to the end and closes PATH N times.
	"openloop": func(args []string) error {
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		for range n {
			if _, err := os.ReadFile(args[1]); err != nil {
				return err
			}
		}
		return nil
	},
}

// requireRoot skips a kernel test for an unprivileged developer, and fails it in CI.
func requireRoot(t *testing.T) { watchtest.RequireRoot(t, "CAP_SYS_ADMIN for fanotify") }

// sink collects what a running watcher sends.
type sink = watchtest.Sink

// run runs w until the test ends and fails the test if Run fails.
func run(t *testing.T, w FileWatcher) *sink { return watchtest.Run(t, w) }

// start runs a new watcher until the test ends.
func start(t *testing.T, rules []FileRule, opts Options) (FileWatcher, *sink) {
	t.Helper()
	w, err := NewFileWatcher(rules, opts)
	if err != nil {
		t.Fatalf("NewFileWatcher: %v", err)
	}
	return w, run(t, w)
}
