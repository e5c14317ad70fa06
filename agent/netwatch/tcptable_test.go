package netwatch

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// mibRow is one row of a Windows TCP table as a test writes it.
type mibRow struct {
	state         uint32
	local, remote netip.AddrPort
	pid           uint32
}

// rawMIBTable builds a MIB_TCPTABLE_OWNER_PID (v6 false) or MIB_TCP6TABLE_OWNER_PID as
// GetExtendedTcpTable fills it on little-endian Windows. Ports are written into the
// first two bytes of their 32-bit field, in network order, as Windows does.
func rawMIBTable(v6 bool, rows ...mibRow) []byte {
	le, be := binary.LittleEndian, binary.BigEndian
	b := le.AppendUint32(nil, uint32(len(rows)))
	for _, r := range rows {
		if !v6 {
			row := make([]byte, mibTCPRowLen)
			la, ra := r.local.Addr().As4(), r.remote.Addr().As4()
			le.PutUint32(row[0:], r.state)
			copy(row[4:], la[:])
			be.PutUint16(row[8:], r.local.Port())
			copy(row[12:], ra[:])
			be.PutUint16(row[16:], r.remote.Port())
			le.PutUint32(row[20:], r.pid)
			b = append(b, row...)
			continue
		}
		row := make([]byte, mibTCP6RowLen)
		la, ra := r.local.Addr().As16(), r.remote.Addr().As16()
		copy(row[0:], la[:])
		le.PutUint32(row[16:], 3) // scope id, dropped
		be.PutUint16(row[20:], r.local.Port())
		copy(row[24:], ra[:])
		be.PutUint16(row[44:], r.remote.Port())
		le.PutUint32(row[48:], r.state)
		le.PutUint32(row[52:], r.pid)
		b = append(b, row...)
	}
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// anyAddr is a listener's local end on every address, port p.
func anyAddr(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, p) }

func TestParseTCPTables(t *testing.T) {
	const timeWait, synSent = 11, 3
	v4 := rawMIBTable(false,
		mibRow{state: mibTCPStateListen, local: ap("0.0.0.0:3389"), remote: ap("0.0.0.0:0"), pid: 1100},
		mibRow{state: mibTCPStateListen, local: ap("127.0.0.1:8080"), remote: ap("0.0.0.0:0"), pid: 2200},
		mibRow{state: mibTCPStateEstab, local: ap("10.0.0.5:3389"), remote: ap("203.0.113.7:51000"), pid: 1100},
		mibRow{state: timeWait, local: ap("10.0.0.5:3389"), remote: ap("203.0.113.7:50999")},
		mibRow{state: synSent, local: ap("10.0.0.5:50001"), remote: ap("198.51.100.1:443"), pid: 3300},
	)
	got, err := parseTCPTable(v4)
	if err != nil {
		t.Fatal(err)
	}
	want := []tableConn{
		{local: anyAddr(3389), remote: ap("0.0.0.0:0"), listening: true, pid: 1100},
		{local: ap("127.0.0.1:8080"), remote: ap("0.0.0.0:0"), listening: true, pid: 2200},
		{local: ap("10.0.0.5:3389"), remote: ap("203.0.113.7:51000"), pid: 1100},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IPv4 table:\n got %+v\nwant %+v", got, want)
	}

	v6 := rawMIBTable(true,
		mibRow{state: mibTCPStateListen, local: ap("[::]:445"), remote: ap("[::]:0"), pid: 4},
		mibRow{state: mibTCPStateEstab, local: ap("[2001:db8::5]:50123"), remote: ap("[2001:db8::9]:22"), pid: 5150},
	)
	got, err = parseTCP6Table(v6)
	if err != nil {
		t.Fatal(err)
	}
	want = []tableConn{
		{local: anyAddr(445), remote: ap("[::]:0"), listening: true, pid: 4},
		{local: ap("[2001:db8::5]:50123"), remote: ap("[2001:db8::9]:22"), pid: 5150},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IPv6 table:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseTCPTableErrors(t *testing.T) {
	one := rawMIBTable(false, mibRow{state: mibTCPStateEstab, local: ap("10.0.0.5:1"), remote: ap("10.0.0.6:2")})
	for _, tc := range []struct {
		name, want string
		parse      func([]byte) ([]tableConn, error)
		data       []byte
	}{
		{name: "empty", parse: parseTCPTable, data: nil, want: "MIB_TCPTABLE_OWNER_PID: 0 bytes, shorter than its row count (4)"},
		{name: "row cut", parse: parseTCPTable, data: one[:len(one)-1], want: "MIB_TCPTABLE_OWNER_PID: 1 rows need 28 bytes, the table has 27"},
		{name: "huge count", parse: parseTCP6Table, data: []byte{0xff, 0xff, 0xff, 0xff}, want: "MIB_TCP6TABLE_OWNER_PID: 4294967295 rows need 240518168524 bytes, the table has 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.parse(tc.data); err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
	// A buffer larger than the table (GetExtendedTcpTable leaves the rest) is fine.
	if got, err := parseTCPTable(append(one, make([]byte, 100)...)); err != nil || len(got) != 1 {
		t.Errorf("padded table: %+v, %v", got, err)
	}
}

// A macOS netstat -an -W -p tcp listing, as documented in netstat(1) and printed by
// macOS 14 (not captured here: no Mac is available to the tests).
const netstatSample = `Active Internet connections (including servers)
Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)    
tcp4       0      0  192.168.1.5.52345      17.57.146.52.5223      ESTABLISHED
tcp6       0      0  fe80::aede:48ff:fe00:1122%en0.49153 fe80::1%en0.22 ESTABLISHED
tcp4       0      0  127.0.0.1.22           127.0.0.1.61000        ESTABLISHED
tcp4       0      0  127.0.0.1.61000        127.0.0.1.22           ESTABLISHED
tcp4       0      0  192.168.1.5.52400      140.82.112.3.443       TIME_WAIT  
tcp46      0      0  *.22                   *.*                    LISTEN     
tcp4       0      0  127.0.0.1.631          *.*                    LISTEN     
tcp6       0      0  ::1.631                *.*                    LISTEN     
`

func TestParseNetstat(t *testing.T) {
	got, err := parseNetstat([]byte(netstatSample))
	if err != nil {
		t.Fatal(err)
	}
	wildcard := anyAddr(0)
	want := []tableConn{
		{local: ap("192.168.1.5:52345"), remote: ap("17.57.146.52:5223")},
		{local: ap("[fe80::aede:48ff:fe00:1122]:49153"), remote: ap("[fe80::1]:22")},
		{local: ap("127.0.0.1:22"), remote: ap("127.0.0.1:61000")},
		{local: ap("127.0.0.1:61000"), remote: ap("127.0.0.1:22")},
		{local: anyAddr(22), remote: wildcard, listening: true},
		{local: ap("127.0.0.1:631"), remote: wildcard, listening: true},
		{local: ap("[::1]:631"), remote: wildcard, listening: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseNetstatErrors(t *testing.T) {
	header := "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)\n"
	for _, tc := range []struct{ name, out, want string }{
		{name: "short row", out: header + "tcp4 0 0 127.0.0.1.22 ESTABLISHED\n", want: "netstat line 2: 5 fields, want at least 6 (proto, queues, addresses, state)"},
		{name: "no port", out: header + "tcp4 0 0 localhost 127.0.0.1.22 ESTABLISHED\n", want: `netstat line 2: local address: "localhost" has no .port`},
		{name: "bad port", out: header + "tcp4 0 0 127.0.0.1.22 127.0.0.1.70000 ESTABLISHED\n", want: `netstat line 2: foreign address: "127.0.0.1.70000": port "70000" is not a number from 0 to 65535`},
		{name: "wildcard connection", out: header + "tcp4 0 0 *.22 127.0.0.1.1 ESTABLISHED\n", want: "netstat line 2: an established connection with a '*' address"},
		{name: "bad address", out: header + "tcp4 0 0 fe80::aede:48ff:.49153 127.0.0.1.1 ESTABLISHED\n", want: `netstat line 2: local address: "fe80::aede:48ff:.49153": "fe80::aede:48ff:" is not an IP address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseNetstat([]byte(tc.out)); err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzParseTCPTable feeds arbitrary bytes to both Windows table parsers: they must never
// panic and must keep only listeners and connections with valid ends.
func FuzzParseTCPTable(f *testing.F) {
	f.Add(rawMIBTable(false, mibRow{state: mibTCPStateEstab, local: ap("10.0.0.5:3389"), remote: ap("203.0.113.7:51000"), pid: 7}))
	f.Add(rawMIBTable(true, mibRow{state: mibTCPStateListen, local: ap("[::]:445"), remote: ap("[::]:0"), pid: 4}))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) ([]tableConn, error){parseTCPTable, parseTCP6Table} {
			conns, err := parse(data)
			if err != nil && !strings.Contains(err.Error(), "bytes") {
				t.Fatalf("error %q does not say how many bytes", err)
			}
			for _, c := range conns {
				if !c.listening && (!c.local.Addr().IsValid() || !c.remote.Addr().IsValid()) {
					t.Fatalf("connection with an invalid end: %+v", c)
				}
				if c.listening && c.local.Addr().IsUnspecified() {
					t.Fatalf("listener on every address kept as %v, not as a wildcard", c.local)
				}
			}
		}
	})
}

// FuzzParseNetstat feeds arbitrary text to the netstat parser: it must never panic,
// and every error names its line.
func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte(netstatSample))
	f.Add([]byte("tcp4 0 0 *.* *.* LISTEN\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		conns, err := parseNetstat(data)
		if err != nil {
			if !strings.Contains(err.Error(), "netstat") {
				t.Fatalf("error %q does not say where", err)
			}
			return
		}
		for _, c := range conns {
			if !c.listening && (!c.local.Addr().IsValid() || !c.remote.Addr().IsValid()) {
				t.Fatalf("connection with a wildcard end: %+v", c)
			}
		}
	})
}
