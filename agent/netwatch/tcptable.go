package netwatch

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// tableConn is one TCP socket of a polled connection table (Windows' TCP tables,
// macOS's netstat): a connection, or a listener when listening is set (its local
// address is then invalid when it listens on every address).
type tableConn struct {
	local, remote netip.AddrPort
	listening     bool
	pid           int32 // owning process; 0 when the table does not say
}

// The layout of Windows' MIB_TCPTABLE_OWNER_PID and MIB_TCP6TABLE_OWNER_PID (tcpmib.h):
// a 32-bit row count, then rows of 32-bit fields in the machine's (little-endian)
// order, except addresses and ports, which are in network order. The states are
// MIB_TCP_STATE values.
const (
	mibTCPRowLen      = 24 // state, local addr, local port, remote addr, remote port, pid
	mibTCP6RowLen     = 56 // local addr[16], scope, port, remote addr[16], scope, port, state, pid
	mibTCPStateListen = 2
	mibTCPStateEstab  = 5
)

// parseTCPTable decodes a MIB_TCPTABLE_OWNER_PID (IPv4) as GetExtendedTcpTable fills
// it, keeping the listeners and established connections.
func parseTCPTable(b []byte) ([]tableConn, error) {
	return parseMIBTable(b, "MIB_TCPTABLE_OWNER_PID", mibTCPRowLen, func(row []byte) (uint32, tableConn) {
		le, be := binary.LittleEndian, binary.BigEndian
		return le.Uint32(row[0:]), tableConn{
			local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte(row[4:8])), be.Uint16(row[8:])),
			remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte(row[12:16])), be.Uint16(row[16:])),
			pid:    int32(le.Uint32(row[20:])),
		}
	})
}

// parseTCP6Table decodes a MIB_TCP6TABLE_OWNER_PID (IPv6) as GetExtendedTcpTable fills
// it, keeping the listeners and established connections. Scope ids are dropped.
func parseTCP6Table(b []byte) ([]tableConn, error) {
	return parseMIBTable(b, "MIB_TCP6TABLE_OWNER_PID", mibTCP6RowLen, func(row []byte) (uint32, tableConn) {
		le, be := binary.LittleEndian, binary.BigEndian
		return le.Uint32(row[48:]), tableConn{
			local:  netip.AddrPortFrom(netip.AddrFrom16([16]byte(row[0:16])), be.Uint16(row[20:])),
			remote: netip.AddrPortFrom(netip.AddrFrom16([16]byte(row[24:40])), be.Uint16(row[44:])),
			pid:    int32(le.Uint32(row[52:])),
		}
	})
}

// parseMIBTable walks the rows of a table named name, each rowLen bytes, that decode
// turns into a state and a socket.
func parseMIBTable(b []byte, name string, rowLen int, decode func([]byte) (uint32, tableConn)) ([]tableConn, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%s: %d bytes, shorter than its row count (4)", name, len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if need := 4 + uint64(n)*uint64(rowLen); need > uint64(len(b)) {
		return nil, fmt.Errorf("%s: %d rows need %d bytes, the table has %d", name, n, need, len(b))
	}
	var out []tableConn
	for i := range int(n) {
		state, c := decode(b[4+i*rowLen : 4+(i+1)*rowLen])
		switch state {
		case mibTCPStateEstab:
			out = append(out, c)
		case mibTCPStateListen:
			c.listening = true
			if c.local.Addr().IsUnspecified() {
				c.local = netip.AddrPortFrom(netip.Addr{}, c.local.Port())
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// parseNetstat decodes the output of macOS's `netstat -an -W -p tcp`, keeping the
// listeners and established connections:
//
//	Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)
//	tcp4       0      0  192.168.1.5.52345      17.57.146.52.5223      ESTABLISHED
//	tcp46      0      0  *.22                   *.*                    LISTEN
//
// An address is an IP address (IPv6 perhaps with a %zone) or "*", a dot, and a port
// number or "*". Lines that are not tcp rows are skipped; a tcp row that cannot be
// read is an error naming its line.
func parseNetstat(out []byte) ([]tableConn, error) {
	var conns []tableConn
	sc := bufio.NewScanner(bytes.NewReader(out))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "tcp") {
			continue
		}
		if len(f) < 6 {
			return nil, fmt.Errorf("netstat line %d: %d fields, want at least 6 (proto, queues, addresses, state)", line, len(f))
		}
		var c tableConn
		switch f[5] {
		case "ESTABLISHED":
		case "LISTEN":
			c.listening = true
		default:
			continue
		}
		var err error
		if c.local, err = parseNetstatAddr(f[3]); err != nil {
			return nil, fmt.Errorf("netstat line %d: local address: %w", line, err)
		}
		if c.remote, err = parseNetstatAddr(f[4]); err != nil {
			return nil, fmt.Errorf("netstat line %d: foreign address: %w", line, err)
		}
		if !c.listening && (!c.local.Addr().IsValid() || !c.remote.Addr().IsValid()) {
			return nil, fmt.Errorf("netstat line %d: an established connection with a '*' address", line)
		}
		conns = append(conns, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading netstat output: %w", err)
	}
	return conns, nil
}

// parseNetstatAddr reads "address.port", where "*" stands for any address (an invalid
// netip.Addr) or any port (0). IPv6 zones are dropped, as sock_diag has none.
func parseNetstatAddr(s string) (netip.AddrPort, error) {
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return netip.AddrPort{}, fmt.Errorf("%q has no .port", s)
	}
	host, port := s[:dot], s[dot+1:]
	var p uint64
	if port != "*" {
		var err error
		if p, err = strconv.ParseUint(port, 10, 16); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
		}
	}
	if host == "*" {
		return netip.AddrPortFrom(netip.Addr{}, uint16(p)), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	return netip.AddrPortFrom(a.WithZone(""), uint16(p)), nil
}
