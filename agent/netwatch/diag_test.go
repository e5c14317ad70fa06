package netwatch

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// diagMsg builds one SOCK_DIAG_BY_FAMILY netlink message as the kernel sends it.
func diagMsg(seq uint32, s diagSock) []byte {
	ne, be := binary.NativeEndian, binary.BigEndian
	b := make([]byte, nlmsgHdrLen+inetDiagMsgLen)
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint32(b[8:], seq)
	p := b[nlmsgHdrLen:]
	p[0], p[1] = s.family, s.state
	be.PutUint16(p[4:], s.local.Port())
	be.PutUint16(p[6:], s.remote.Port())
	if s.family == afInet {
		a, r := s.local.Addr().As4(), s.remote.Addr().As4()
		copy(p[8:], a[:])
		copy(p[24:], r[:])
	} else {
		a, r := s.local.Addr().As16(), s.remote.Addr().As16()
		copy(p[8:], a[:])
		copy(p[24:], r[:])
	}
	ne.PutUint32(p[44:], uint32(s.cookie))
	ne.PutUint32(p[48:], uint32(s.cookie>>32))
	ne.PutUint32(p[64:], s.uid)
	ne.PutUint32(p[68:], s.inode)
	return b
}

func control(seq uint32, typ uint16, payload []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(payload))
	binary.NativeEndian.PutUint32(b[0:], uint32(nlmsgHdrLen+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return append(b, payload...)
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var (
	v4Sock = diagSock{family: afInet, state: tcpEstablished, local: netip.MustParseAddrPort("127.0.0.1:22"),
		remote: netip.MustParseAddrPort("127.0.0.2:40000"), uid: 0, inode: 1234, cookie: 1<<40 | 7}
	v6Sock = diagSock{family: afInet6, state: tcpListen, local: netip.MustParseAddrPort("[::]:443"),
		remote: netip.MustParseAddrPort("[::]:0"), uid: 33, inode: 99, cookie: 8}
)

func TestParseDump(t *testing.T) {
	minus := func(errno int32) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(-errno)) }
	for _, tc := range []struct {
		name     string
		data     []byte
		want     []diagSock
		wantDone bool
		wantErr  string
	}{
		{name: "sockets then done", data: concat(diagMsg(5, v4Sock), diagMsg(5, v6Sock), control(5, nlmsgDone, make([]byte, 4))),
			want: []diagSock{v4Sock, v6Sock}, wantDone: true},
		{name: "more to come", data: diagMsg(5, v4Sock), want: []diagSock{v4Sock}},
		{name: "stale sequence skipped", data: concat(diagMsg(4, v6Sock), diagMsg(5, v4Sock)), want: []diagSock{v4Sock}},
		{name: "kernel error", data: control(5, nlmsgError, minus(22)), wantErr: "sock_diag dump: invalid argument"},
		{name: "ack", data: concat(control(5, nlmsgError, minus(0)), control(5, nlmsgDone, nil)), wantDone: true},
		{name: "short header", data: make([]byte, 10), wantErr: "netlink message at byte 0: 10 bytes, shorter than its header"},
		{name: "length past the end", data: concat(diagMsg(5, v4Sock), control(5, nlmsgDone, nil)[:15]),
			want: []diagSock{v4Sock}, wantErr: "netlink message at byte 88: 15 bytes, shorter than its header"},
		{name: "bad length", data: func() []byte { b := diagMsg(5, v4Sock); b[0] = 200; return b }(),
			wantErr: "netlink message at byte 0: length 200 outside 16..88"},
		{name: "short inet_diag_msg", data: control(5, sockDiagByFamily, make([]byte, 20)),
			wantErr: "sock_diag message at byte 0: 20 bytes, shorter than inet_diag_msg (72)"},
		{name: "unknown family", data: diagMsg(5, diagSock{family: 1}),
			wantErr: "sock_diag message at byte 0: address family 1 at byte 0 is neither AF_INET nor AF_INET6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, done, err := parseDump(tc.data, 5)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || done != tc.wantDone {
				t.Errorf("got %+v done=%v, want %+v done=%v", got, done, tc.want, tc.wantDone)
			}
		})
	}
}

func TestDiagRequest(t *testing.T) {
	b := diagRequest(afInet6, 1<<tcpListen, 9)
	ne := binary.NativeEndian
	if len(b) != 72 || ne.Uint32(b) != 72 || ne.Uint16(b[4:]) != sockDiagByFamily ||
		ne.Uint16(b[6:]) != nlmFRequest|nlmFDump || ne.Uint32(b[8:]) != 9 ||
		b[16] != afInet6 || b[17] != ipprotoTCP || ne.Uint32(b[20:]) != 1<<tcpListen {
		t.Errorf("request = % x", b)
	}
}

// FuzzParseDump feeds arbitrary datagrams to the parser: it must never panic, and what
// it returns must be sockets of the two families it knows.
func FuzzParseDump(f *testing.F) {
	f.Add(concat(diagMsg(1, v4Sock), diagMsg(1, v6Sock), control(1, nlmsgDone, nil)))
	f.Add(control(1, nlmsgError, []byte{0xea, 0xff, 0xff, 0xff}))
	f.Fuzz(func(t *testing.T, data []byte) {
		socks, _, err := parseDump(data, 1)
		for _, s := range socks {
			if s.family != afInet && s.family != afInet6 {
				t.Fatalf("socket of family %d", s.family)
			}
		}
		if err != nil && !strings.Contains(err.Error(), "byte") && !strings.Contains(err.Error(), "sock_diag dump") {
			t.Fatalf("error %q names no byte", err)
		}
	})
}
