//go:build !linux

package netwatch

import "fmt"

// newMonitor fails: connection monitoring needs eBPF or NETLINK_SOCK_DIAG. In auto mode
// New then returns a watcher whose Degraded names the monitor rules left unwatched.
func newMonitor(watchSet, Options, *netWatcher) (monitor, error) {
	return nil, fmt.Errorf("connection monitoring needs Linux: %w", ErrNotSupported)
}
