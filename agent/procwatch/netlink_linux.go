//go:build linux

package procwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The process connector's ABI (linux/connector.h, linux/cn_proc.h); x/sys/unix does
// not define these.
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procCnMcastIgnore = 2
	procEventExec     = 0x2

	cnMsgLen = 20 // struct cn_msg: id (idx, val), seq, ack, len, flags
	// Offsets in struct proc_event, after the cn_msg.
	offWhat     = 0
	offExecTgid = 20 // what, cpu, timestamp_ns, then exec.process_pid, exec.process_tgid
	procEvMin   = 24

	netlinkRcvBuf = 4 << 20
)

// netlinkSource reads PROC_EVENT_EXEC from the kernel's process connector and reads
// everything else from /proc at once.
type netlinkSource struct {
	en       *enricher
	fd, wake int
	enobufs  atomic.Uint64
	done     chan struct{} // closed when read has returned
}

func openNetlink(en *enricher) (source, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("opening a NETLINK_CONNECTOR socket: %w", err)
	}
	s := &netlinkSource{en: en, fd: fd, done: make(chan struct{})}
	if err := s.subscribe(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	s.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating eventfd: %w", err)
	}
	return s, nil
}

// subscribe joins the process events group and asks the connector to multicast them
// (which older kernels allow only with CAP_NET_ADMIN).
func (s *netlinkSource) subscribe() error {
	if err := unix.Bind(s.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		return fmt.Errorf("binding to the process connector group: %w", err)
	}
	// A larger buffer absorbs bursts of execs; without the privilege it stays default.
	_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, netlinkRcvBuf)
	if err := s.control(procCnMcastListen); err != nil {
		return fmt.Errorf("subscribing to process events (PROC_CN_MCAST_LISTEN): %w", err)
	}
	return nil
}

// control sends the connector a multicast operation: listen, or ignore (so that the
// kernel stops producing events nobody reads).
func (s *netlinkSource) control(op uint32) error {
	msg := make([]byte, unix.NLMSG_HDRLEN+cnMsgLen+4)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.NLMSG_DONE)
	cn := msg[unix.NLMSG_HDRLEN:]
	ne.PutUint32(cn[0:], cnIdxProc)
	ne.PutUint32(cn[4:], cnValProc)
	ne.PutUint16(cn[16:], 4)
	ne.PutUint32(cn[cnMsgLen:], op)
	return unix.Sendto(s.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (s *netlinkSource) mode() string { return ModeNetlink }

func (s *netlinkSource) limits() string {
	return "netlink: the kernel names only the pid of an exec; a process that exits before /proc is read loses its user, command line and executable (listed in missing), and the executed file name is never seen"
}

func (s *netlinkSource) read(push func(*execRecord)) error {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(s.wake), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("polling the process connector: %w", err)
		}
		if fds[1].Revents != 0 {
			return nil
		}
		for {
			n, from, err := unix.Recvfrom(s.fd, buf, 0)
			switch {
			case errors.Is(err, unix.EAGAIN):
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ENOBUFS):
				// The socket overflowed: an unknown number of events is gone.
				s.enobufs.Add(1)
				continue
			case err != nil:
				return fmt.Errorf("reading the process connector: %w", err)
			default:
				if sa, ok := from.(*unix.SockaddrNetlink); ok && sa.Pid == 0 {
					s.handle(buf[:n], push)
				}
				continue
			}
			break
		}
	}
}

// handle processes one datagram from the kernel: netlink messages carrying cn_msg
// proc_event payloads, of which only execs matter.
func (s *netlinkSource) handle(b []byte, push func(*execRecord)) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return
	}
	for _, m := range msgs {
		for _, pid := range execPIDs(m.Data) {
			r := &execRecord{pid: pid}
			s.en.fromProc(r)
			push(r)
		}
	}
}

// execPIDs returns the tgid of a PROC_EVENT_EXEC payload (cn_msg and proc_event), or
// nothing for any other payload.
func execPIDs(data []byte) []int32 {
	if len(data) < cnMsgLen+procEvMin {
		return nil
	}
	ne := binary.NativeEndian
	if ne.Uint32(data[0:]) != cnIdxProc || ne.Uint32(data[4:]) != cnValProc {
		return nil
	}
	ev := data[cnMsgLen:]
	if ne.Uint32(ev[offWhat:]) != procEventExec {
		return nil
	}
	return []int32{int32(ne.Uint32(ev[offExecTgid:]))}
}

func (s *netlinkSource) kernelLost() (uint64, bool) { return s.enobufs.Load(), true }

func (s *netlinkSource) close() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(s.wake, one[:])
	<-s.done
	_ = s.control(procCnMcastIgnore) // best effort: closing the socket is what matters
	return errors.Join(unix.Close(s.fd), unix.Close(s.wake))
}
