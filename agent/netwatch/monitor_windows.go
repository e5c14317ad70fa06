package netwatch

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// tcpTableOwnerPIDAll is TCP_TABLE_OWNER_PID_ALL (iprtrmib.h): every TCP socket, with
// its owning process.
const tcpTableOwnerPIDAll = 5

// newMonitor starts the poll monitor: eBPF and sock_diag are Linux's, so forcing
// either fails with ErrNotSupported.
func newMonitor(watch watchSet, opts Options, w *netWatcher) (monitor, error) {
	if opts.ForceMode != "" && opts.ForceMode != "auto" {
		return nil, fmt.Errorf("starting %s network monitor: it needs Linux: %w", opts.ForceMode, ErrNotSupported)
	}
	t := &mibTable{get: windows.NewLazySystemDLL("iphlpapi.dll").NewProc("GetExtendedTcpTable")}
	if err := t.get.Find(); err != nil {
		return nil, fmt.Errorf("starting poll network monitor: %w", err)
	}
	m, err := newPollMonitor(watch, opts, w, t)
	if err != nil {
		return nil, fmt.Errorf("starting poll network monitor: %w", err)
	}
	return m, nil
}

// mibTable lists the TCP sockets with GetExtendedTcpTable, IPv4 then IPv6, each
// with its owning process.
type mibTable struct {
	get *windows.LazyProc
	buf []byte // reused across polls, grown as the tables grow
}

func (t *mibTable) list() ([]tableConn, error) {
	v4, err := t.table(windows.AF_INET)
	if err != nil {
		return nil, err
	}
	conns, err := parseTCPTable(v4)
	if err != nil {
		return nil, err
	}
	v6, err := t.table(windows.AF_INET6)
	if err != nil {
		return nil, err
	}
	conns6, err := parseTCP6Table(v6)
	if err != nil {
		return nil, err
	}
	return append(conns, conns6...), nil
}

// table fills t.buf with the TCP table of family af and returns it; it is valid until
// the next call.
func (t *mibTable) table(af uint32) ([]byte, error) {
	for range 4 {
		if len(t.buf) == 0 {
			t.buf = make([]byte, 16<<10)
		}
		size := uint32(len(t.buf))
		r, _, _ := t.get.Call(uintptr(unsafe.Pointer(&t.buf[0])), uintptr(unsafe.Pointer(&size)), 0, uintptr(af), tcpTableOwnerPIDAll, 0)
		switch err := syscall.Errno(r); {
		case err == 0:
			return t.buf, nil
		case errors.Is(err, windows.ERROR_INSUFFICIENT_BUFFER):
			t.buf = make([]byte, size+size/4) // room for sockets opened meanwhile
		default:
			return nil, fmt.Errorf("GetExtendedTcpTable (address family %d): %w", af, err)
		}
	}
	return nil, fmt.Errorf("GetExtendedTcpTable (address family %d): the table kept growing", af)
}

// exe is the image path of process pid, if the agent may open it.
func (t *mibTable) exe(pid int32) string {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return ""
	}
	defer windows.CloseHandle(h)
	for _, size := range []int{windows.MAX_PATH + 1, windows.MAX_LONG_PATH} {
		buf := make([]uint16, size)
		n := uint32(len(buf))
		err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n)
		if err == nil {
			return windows.UTF16ToString(buf[:n])
		}
		if !errors.Is(err, windows.ERROR_INSUFFICIENT_BUFFER) {
			return ""
		}
	}
	return ""
}

func (t *mibTable) limits() string {
	return "the owning process is named by pid and executable only (ppid, cmdline and user are missing)"
}
