package netwatch

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// netstatTimeout bounds one run of netstat.
const netstatTimeout = 2 * time.Second

// newMonitor starts the poll monitor: eBPF and sock_diag are Linux's, so forcing
// either fails with ErrNotSupported.
func newMonitor(watch watchSet, opts Options, w *netWatcher) (monitor, error) {
	if opts.ForceMode != "" && opts.ForceMode != "auto" {
		return nil, fmt.Errorf("starting %s network monitor: it needs Linux: %w", opts.ForceMode, ErrNotSupported)
	}
	m, err := newPollMonitor(watch, opts, w, netstatTable{})
	if err != nil {
		return nil, fmt.Errorf("starting poll network monitor: %w", err)
	}
	return m, nil
}

// netstatTable lists the TCP sockets by running macOS's netstat, which reads the
// kernel's net.inet.tcp.pcblist_n. It does not name the owning process.
type netstatTable struct{}

func (netstatTable) list() ([]tableConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), netstatTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/sbin/netstat", "-an", "-W", "-p", "tcp").Output()
	if err != nil {
		return nil, fmt.Errorf("running /usr/sbin/netstat -an -W -p tcp: %w", err)
	}
	return parseNetstat(out)
}

func (netstatTable) exe(int32) string { return "" }

func (netstatTable) limits() string {
	return "it is read by running /usr/sbin/netstat at each poll, which does not name the process owning a connection (pid, exe, cmdline and user are missing)"
}
