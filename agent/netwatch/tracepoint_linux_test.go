package netwatch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// format61 is the format file of Linux 6.1 through 6.18.
const format61 = `name: inet_sock_set_state
ID: 2287
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:int oldstate;	offset:16;	size:4;	signed:1;
	field:int newstate;	offset:20;	size:4;	signed:1;
	field:__u16 sport;	offset:24;	size:2;	signed:0;
	field:__u16 dport;	offset:26;	size:2;	signed:0;
	field:__u16 family;	offset:28;	size:2;	signed:0;
	field:__u16 protocol;	offset:30;	size:2;	signed:0;
	field:__u8 saddr[4];	offset:32;	size:4;	signed:0;
	field:__u8 daddr[4];	offset:36;	size:4;	signed:0;
	field:__u8 saddr_v6[16];	offset:40;	size:16;	signed:0;
	field:__u8 daddr_v6[16];	offset:56;	size:16;	signed:0;

print fmt: "family=%s ..."
`

func TestCheckTracepointFormat(t *testing.T) {
	noProtocol := strings.Replace(format61, "\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;\n", "", 1)
	for _, tc := range []struct{ name, format, wantErr string }{
		{name: "6.x", format: format61},
		{name: "before 5.6", format: noProtocol, wantErr: "no field protocol"},
		{name: "shifted", format: strings.Replace(format61, "saddr_v6[16];\toffset:40", "saddr_v6[16];\toffset:44", 1),
			wantErr: "field saddr_v6 at offset 44 size 16, the eBPF program expects offset 40 size 16"},
		{name: "garbled", format: strings.Replace(format61, "offset:36", "offset:x", 1), wantErr: `line 17: offset "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "format")
			if err := os.WriteFile(path, []byte(tc.format), 0o644); err != nil {
				t.Fatal(err)
			}
			err := checkTracepointFormat(path)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("checkTracepointFormat = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
