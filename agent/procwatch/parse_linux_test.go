//go:build linux

package procwatch

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// rawExecEvent builds a ring-buffer record as bpf/exec.c writes it.
func rawExecEvent(ev execBPFEvent, filename string, args []byte) []byte {
	ev.FilenameLen = uint32(len(filename) + 1)
	ev.ArgsLen = uint32(len(args))
	b, err := binary.Append(nil, binary.NativeEndian, ev)
	if err != nil {
		panic(err)
	}
	b = append(b, filename...)
	b = append(b, 0)
	return append(b, args...)
}

func TestParseExecEvent(t *testing.T) {
	var comm [16]int8
	for i, c := range "nc" {
		comm[i] = int8(c)
	}
	base := execBPFEvent{CgroupId: 7, Ino: 42, Dev: 8<<20 | 3, Pid: 100, Ppid: 99, Uid: 65534, Gid: 65534, Comm: comm}
	t.Run("full", func(t *testing.T) {
		r, img, err := parseExecEvent(rawExecEvent(base, "/usr/bin/nc", []byte("nc\x00-z\x00127.0.0.1\x001\x00")))
		if err != nil {
			t.Fatal(err)
		}
		if r.pid != 100 || r.ppid != 99 || r.uid != 65534 || r.gid != 65534 || r.comm != "nc" || r.filename != "/usr/bin/nc" ||
			r.cmdline != "nc -z 127.0.0.1 1" || r.cmdlineTruncated || r.cgroup != "cgroup_id=7" || len(r.missing) != 0 {
			t.Errorf("record %+v", r)
		}
		if img != (image{dev: unix.Mkdev(8, 3), ino: 42}) {
			t.Errorf("image %+v, want dev 8:3 ino 42", img)
		}
	})
	t.Run("truncated argv", func(t *testing.T) {
		ev := base
		ev.Flags = flagArgsTruncated
		r, _, err := parseExecEvent(rawExecEvent(ev, "nc", bytes.Repeat([]byte("x"), 4096)))
		if err != nil {
			t.Fatal(err)
		}
		if !r.cmdlineTruncated || len(r.cmdline) != 4096 || r.filename != "nc" {
			t.Errorf("record %+v", r)
		}
	})
	t.Run("unreadable parts", func(t *testing.T) {
		ev := base
		ev.Flags = flagArgsUnreadable | flagFilenameTruncated
		r, _, err := parseExecEvent(rawExecEvent(ev, strings.Repeat("d/", 100), nil))
		if err != nil {
			t.Fatal(err)
		}
		if r.filename != "" || !slices.Contains(r.missing, fieldCmdline) {
			t.Errorf("record %+v: want no file name and cmdline missing", r)
		}
	})
	t.Run("overrun", func(t *testing.T) {
		raw := rawExecEvent(base, "/bin/x", []byte("x\x00"))
		if _, _, err := parseExecEvent(raw[:len(raw)-1]); err == nil || !strings.Contains(err.Error(), "overrun") {
			t.Errorf("error %v, want an overrun", err)
		}
		if _, _, err := parseExecEvent(raw[:10]); err == nil {
			t.Error("a 10-byte record was accepted")
		}
	})
}

func FuzzParseExecEvent(f *testing.F) {
	f.Add(rawExecEvent(execBPFEvent{Pid: 1}, "/bin/sh", []byte("sh\x00")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, _, err := parseExecEvent(raw)
		if err == nil && len(r.cmdline) > 4096 {
			t.Fatalf("cmdline of %d bytes", len(r.cmdline))
		}
	})
}

func TestExecPIDs(t *testing.T) {
	msg := func(idx, val, what, tgid uint32) []byte {
		b := make([]byte, cnMsgLen+procEvMin)
		ne := binary.NativeEndian
		ne.PutUint32(b[0:], idx)
		ne.PutUint32(b[4:], val)
		ne.PutUint32(b[cnMsgLen+offWhat:], what)
		ne.PutUint32(b[cnMsgLen+offExecTgid-4:], tgid+1) // the thread's pid
		ne.PutUint32(b[cnMsgLen+offExecTgid:], tgid)
		return b
	}
	if got := execPIDs(msg(cnIdxProc, cnValProc, procEventExec, 42)); !slices.Equal(got, []int32{42}) {
		t.Errorf("exec: %v, want [42]", got)
	}
	for name, b := range map[string][]byte{
		"fork":      msg(cnIdxProc, cnValProc, 0x1, 42),
		"other idx": msg(2, cnValProc, procEventExec, 42),
		"short":     msg(cnIdxProc, cnValProc, procEventExec, 42)[:cnMsgLen+procEvMin-1],
		"empty":     nil,
	} {
		if got := execPIDs(b); got != nil {
			t.Errorf("%s: %v, want nothing", name, got)
		}
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (we) ird) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n"
	st, ok := parseStat([]byte(line))
	if !ok || st.comm != "we) ird" || st.start != 987654 {
		t.Errorf("parseStat = %+v, %v; want comm %q start 987654", st, ok, "we) ird")
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 x) S", "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 y z"} {
		if _, ok := parseStat([]byte(bad)); ok {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}
