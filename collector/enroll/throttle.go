package enroll

import (
	"sync"
	"time"
)

// maxTracked bounds the addresses a throttle remembers; past it, addresses whose window
// ended are forgotten first.
const maxTracked = 4096

// throttle counts failed attempts per address in fixed windows: max failures within a
// window make the address wait for the window's end. A token's secret has 256 bits, so
// guessing is hopeless anyway; the throttle keeps a scanner from filling the log and the
// store with attempts. It is safe for concurrent use.
type throttle struct {
	max    int
	window time.Duration

	mu     sync.Mutex
	byAddr map[string]*failures
}

// failures are an address's failed attempts in the window that started at since.
type failures struct {
	n     int
	since time.Time
}

func newThrottle(max int, window time.Duration) *throttle {
	return &throttle{max: max, window: window, byAddr: map[string]*failures{}}
}

// retryAfter returns how long addr must wait before its next attempt (0: none).
func (t *throttle) retryAfter(addr string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.byAddr[addr]
	if f == nil || f.n < t.max {
		return 0
	}
	return max(f.since.Add(t.window).Sub(now), 0)
}

// fail records a failed attempt from addr.
func (t *throttle) fail(addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.byAddr[addr]
	if f == nil || !now.Before(f.since.Add(t.window)) {
		if f == nil && len(t.byAddr) >= maxTracked {
			t.forgetEnded(now)
		}
		t.byAddr[addr] = &failures{n: 1, since: now}
		return
	}
	f.n++
}

// forgetEnded drops the addresses whose window has ended. Called with mu held.
func (t *throttle) forgetEnded(now time.Time) {
	for a, f := range t.byAddr {
		if !now.Before(f.since.Add(t.window)) {
			delete(t.byAddr, a)
		}
	}
}
