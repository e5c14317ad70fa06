//go:build !linux && !darwin && !windows

package netwatch

import "fmt"

// newMonitor fails: connection monitoring needs eBPF or NETLINK_SOCK_DIAG (Linux) or a
// polled TCP table (macOS, Windows). In auto mode New then returns a watcher whose
// Degraded names the monitor rules left unwatched.
func newMonitor(watchSet, Options, *netWatcher) (monitor, error) {
	return nil, fmt.Errorf("connection monitoring needs Linux, macOS or Windows: %w", ErrNotSupported)
}
