package netwatch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
)

// Netlink and sock_diag wire constants (linux/netlink.h, linux/sock_diag.h,
// linux/inet_diag.h, include/net/tcp_states.h). They are written out here so that the
// parser, which handles outside input, builds and is fuzzed on every platform.
const (
	nlmsgHdrLen      = 16
	nlmsgError       = 2
	nlmsgDone        = 3
	nlmFRequest      = 0x1
	nlmFDump         = 0x300
	sockDiagByFamily = 20
	inetDiagReqLen   = 56
	inetDiagMsgLen   = 72
	afInet           = 2
	afInet6          = 10
	ipprotoTCP       = 6
	tcpEstablished   = 1
	tcpListen        = 10
)

// diagSock is one socket of a sock_diag dump. local is the socket's own end (for a
// listener, the address and port it listens on).
type diagSock struct {
	family uint8
	state  uint8
	local  netip.AddrPort
	remote netip.AddrPort
	uid    uint32
	inode  uint32
	cookie uint64
}

// diagRequest is a NETLINK_SOCK_DIAG request to dump the TCP sockets of family whose
// state is in states (a bit mask of 1<<state).
func diagRequest(family uint8, states uint32, seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], nlmFRequest|nlmFDump)
	ne.PutUint32(b[8:], seq)
	b[16] = family
	b[17] = ipprotoTCP
	ne.PutUint32(b[20:], states)
	return b
}

// parseDump decodes one datagram of a sock_diag dump answering request seq. done says
// the dump is complete. Messages of other sequence numbers (an earlier, abandoned dump)
// are skipped. An error names the byte offset of the message at fault.
func parseDump(b []byte, seq uint32) (socks []diagSock, done bool, err error) {
	ne := binary.NativeEndian
	for off := 0; off < len(b); {
		if len(b)-off < nlmsgHdrLen {
			return socks, false, fmt.Errorf("netlink message at byte %d: %d bytes, shorter than its header", off, len(b)-off)
		}
		n := ne.Uint32(b[off:])
		if n < nlmsgHdrLen || uint64(n) > uint64(len(b)-off) {
			return socks, false, fmt.Errorf("netlink message at byte %d: length %d outside 16..%d", off, n, len(b)-off)
		}
		typ, mseq := ne.Uint16(b[off+4:]), ne.Uint32(b[off+8:])
		payload := b[off+nlmsgHdrLen : off+int(n)]
		if mseq == seq {
			switch typ {
			case nlmsgDone:
				return socks, true, nil
			case nlmsgError:
				if len(payload) < 4 {
					return socks, false, fmt.Errorf("netlink error message at byte %d: %d bytes, want 4", off, len(payload))
				}
				if code := int32(ne.Uint32(payload)); code != 0 {
					return socks, false, fmt.Errorf("sock_diag dump: %w", syscall.Errno(-code))
				}
			case sockDiagByFamily:
				s, err := decodeDiagMsg(payload)
				if err != nil {
					return socks, false, fmt.Errorf("sock_diag message at byte %d: %w", off, err)
				}
				socks = append(socks, s)
			}
		}
		off += (int(n) + 3) &^ 3
	}
	return socks, false, nil
}

// decodeDiagMsg decodes a struct inet_diag_msg (attributes after it are ignored).
func decodeDiagMsg(p []byte) (diagSock, error) {
	if len(p) < inetDiagMsgLen {
		return diagSock{}, fmt.Errorf("%d bytes, shorter than inet_diag_msg (%d)", len(p), inetDiagMsgLen)
	}
	ne, be := binary.NativeEndian, binary.BigEndian
	s := diagSock{
		family: p[0],
		state:  p[1],
		cookie: uint64(ne.Uint32(p[44:])) | uint64(ne.Uint32(p[48:]))<<32,
		uid:    ne.Uint32(p[64:]),
		inode:  ne.Uint32(p[68:]),
	}
	sport, dport := be.Uint16(p[4:]), be.Uint16(p[6:])
	src, dst := p[8:24], p[24:40]
	switch s.family {
	case afInet:
		s.local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(src[:4])), sport)
		s.remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(dst[:4])), dport)
	case afInet6:
		s.local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(src)), sport)
		s.remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(dst)), dport)
	default:
		return diagSock{}, fmt.Errorf("address family %d at byte 0 is neither AF_INET nor AF_INET6", s.family)
	}
	return s, nil
}
