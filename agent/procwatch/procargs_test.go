package procwatch

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/agent/proc"
)

// rawProcArgs builds a kern.procargs2 buffer as macOS lays it out: argc, the exec
// path, NUL padding, argv, then the environment and the "apple" strings.
func rawProcArgs(argc int32, execPath string, pad int, args ...string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(argc))
	b = append(b, execPath...)
	b = append(b, make([]byte, 1+pad)...)
	for _, a := range args {
		b = append(b, a...)
		b = append(b, 0)
	}
	return b
}

func TestParseProcArgs(t *testing.T) {
	env := []string{"PATH=/usr/bin:/bin", "executable_path=/usr/bin/nc"}
	for _, tc := range []struct {
		name    string
		raw     []byte
		want    procArgs
		wantErr string
	}{
		{name: "argv then environment", raw: rawProcArgs(3, "/usr/bin/nc", 4, append([]string{"nc", "-l", "4444"}, env...)...),
			want: procArgs{execPath: "/usr/bin/nc", cmdline: "nc -l 4444"}},
		{name: "no padding", raw: rawProcArgs(1, "/bin/sh", 0, "sh"), want: procArgs{execPath: "/bin/sh", cmdline: "sh"}},
		{name: "relative exec path", raw: rawProcArgs(2, "./x", 1, "./x", "-v"), want: procArgs{execPath: "./x", cmdline: "./x -v"}},
		{name: "no arguments", raw: rawProcArgs(0, "/sbin/launchd", 3), want: procArgs{execPath: "/sbin/launchd"}},
		{name: "argument with spaces", raw: rawProcArgs(3, "/bin/sh", 2, "sh", "-c", "curl x | sh"),
			want: procArgs{execPath: "/bin/sh", cmdline: "sh -c curl x | sh"}},
		{name: "long argv is cut", raw: rawProcArgs(2, "/bin/echo", 0, "echo", strings.Repeat("a", proc.MaxCmdline)),
			want: procArgs{execPath: "/bin/echo", cmdline: "echo " + strings.Repeat("a", proc.MaxCmdline-5), truncated: true}},
		{name: "short", raw: []byte{1, 0}, wantErr: "kern.procargs2: 2 bytes, shorter than argc (4)"},
		{name: "negative argc", raw: rawProcArgs(-1, "/bin/sh", 0), wantErr: "kern.procargs2: argc -1 at byte 0 is negative"},
		{name: "unterminated exec path", raw: []byte{1, 0, 0, 0, '/', 'b'}, wantErr: "kern.procargs2: exec path at byte 4 has no terminating NUL"},
		{name: "argc past the arguments", raw: rawProcArgs(3, "/bin/sh", 0, "sh", "-i"),
			wantErr: "kern.procargs2: argument 2 of 3 at byte 18 has no terminating NUL"},
		{name: "unterminated argument", raw: append(rawProcArgs(2, "/bin/sh", 0, "sh"), "-i"...),
			wantErr: "kern.procargs2: argument 1 of 2 at byte 15 has no terminating NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcArgs(tc.raw)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseProcArgs feeds arbitrary buffers to the parser: it must never panic, keep
// the command line within its bound, and name a byte in every error.
func FuzzParseProcArgs(f *testing.F) {
	f.Add(rawProcArgs(3, "/usr/bin/nc", 4, "nc", "-l", "4444", "HOME=/var/root"))
	f.Add(rawProcArgs(0x7fffffff, "/bin/sh", 0, "sh"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		pa, err := parseProcArgs(raw)
		if err != nil {
			if !strings.Contains(err.Error(), "byte") {
				t.Fatalf("error %q names no byte", err)
			}
			return
		}
		if len(pa.cmdline) > proc.MaxCmdline || bytes.IndexByte([]byte(pa.execPath), 0) >= 0 {
			t.Fatalf("parsed %+v", pa)
		}
	})
}
