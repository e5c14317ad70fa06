// Package testwait holds the polling wait that tests of asynchronous behaviour share:
// check a condition until it holds or a deadline passes, and fail naming what was last
// seen.
package testwait

import (
	"testing"
	"time"
)

// Until calls cond every interval until it holds, or fails t once timeout has passed,
// naming what and what cond last reported seeing.
func Until(t testing.TB, timeout, every time.Duration, what string, cond func() (ok bool, seen string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		time.Sleep(every)
	}
	t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, last)
}
