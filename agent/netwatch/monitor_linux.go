package netwatch

import "fmt"

// newMonitor attaches the monitor opts.ForceMode asks for. In auto mode an eBPF failure
// (no BTF-era kernel, no CAP_BPF, no tracefs) is logged and sockdiag used instead.
func newMonitor(watch watchSet, opts Options, w *netWatcher) (monitor, error) {
	switch opts.ForceMode {
	case ModeEBPF:
		m, err := newEBPFMonitor(watch, opts, w)
		if err != nil {
			return nil, fmt.Errorf("starting eBPF network monitor: %w", err)
		}
		return m, nil
	case ModeSockDiag:
		return sockDiagOrNil(newSockDiagMonitor(watch, opts, w, ""))
	default:
		m, err := newEBPFMonitor(watch, opts, w)
		if err == nil {
			return m, nil
		}
		opts.Logger.Warn("eBPF network monitor unavailable, falling back to sockdiag", "err", err)
		return sockDiagOrNil(newSockDiagMonitor(watch, opts, w, "ebpf unavailable ("+err.Error()+")"))
	}
}

// sockDiagOrNil keeps a failed constructor's nil pointer out of the interface.
func sockDiagOrNil(m *sockDiagMonitor, err error) (monitor, error) {
	if err != nil {
		return nil, fmt.Errorf("starting sockdiag network monitor: %w", err)
	}
	return m, nil
}
