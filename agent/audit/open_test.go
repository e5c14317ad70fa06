package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestOpenRepairsTornTail(t *testing.T) {
	type want struct {
		good     uint64 // last good seq before the truncation entry
		cut      int64  // bytes cut
		segment  string // segment named in the notice
		noNotice bool   // nothing was cut, so no truncation entry
	}
	tests := []struct {
		name   string
		maxSeg int64
		damage func(t *testing.T, dir string, head uint64) want
	}{
		{
			name: "final line cut mid-line",
			damage: func(t *testing.T, dir string, head uint64) want {
				p, ln := findLine(t, dir, 100)
				rewrite(t, p, func(b []byte) []byte { return b[:len(b)-50] })
				return want{good: 99, cut: int64(len(ln.text)) - 50, segment: filepath.Base(p)}
			},
		},
		{
			name: "final newline missing",
			damage: func(t *testing.T, dir string, head uint64) want {
				p, ln := findLine(t, dir, 100)
				rewrite(t, p, func(b []byte) []byte { return b[:len(b)-1] })
				return want{good: 99, cut: int64(len(ln.text)) - 1, segment: filepath.Base(p)}
			},
		},
		{
			name: "final line holds only its first bytes",
			damage: func(t *testing.T, dir string, head uint64) want {
				p, ln := findLine(t, dir, 100)
				rewrite(t, p, func(b []byte) []byte { return b[:ln.off+3] })
				return want{good: 99, cut: 3, segment: filepath.Base(p)}
			},
		},
		{
			name: "garbage lines appended",
			damage: func(t *testing.T, dir string, head uint64) want {
				p := lastSegment(t, dir)
				junk := []byte("\x01\x02garbage\n{\"hash\":\"00\"}\nmore")
				rewrite(t, p, func(b []byte) []byte { return append(b, junk...) })
				return want{good: 100, cut: int64(len(junk)), segment: filepath.Base(p)}
			},
		},
		{
			name: "garbage without a newline appended",
			damage: func(t *testing.T, dir string, head uint64) want {
				p := lastSegment(t, dir)
				junk := []byte(`{"hash":"abc`)
				rewrite(t, p, func(b []byte) []byte { return append(b, junk...) })
				return want{good: 100, cut: int64(len(junk)), segment: filepath.Base(p)}
			},
		},
		{
			name: "final entry does not hash",
			damage: func(t *testing.T, dir string, head uint64) want {
				p, ln := findLine(t, dir, 100)
				rewrite(t, p, func(b []byte) []byte { b[ln.off+int64(len(ln.text))-20] ^= 0x02; return b })
				return want{good: 99, cut: int64(len(ln.text)), segment: filepath.Base(p)}
			},
		},
		{
			name: "two final entries damaged",
			damage: func(t *testing.T, dir string, head uint64) want {
				p, a := findLine(t, dir, 99)
				_, b := findLine(t, dir, 100)
				rewrite(t, p, func(f []byte) []byte {
					f[a.off+200] ^= 0x02
					f[b.off+10] = 'Z'
					return f
				})
				return want{good: 98, cut: int64(len(a.text) + len(b.text)), segment: filepath.Base(p)}
			},
		},
		{
			name: "zero-filled block followed by unsynced entries",
			damage: func(t *testing.T, dir string, head uint64) want {
				p, a := findLine(t, dir, 95)
				_, b := findLine(t, dir, 97)
				size := fileSize(t, p)
				rewrite(t, p, func(f []byte) []byte {
					clear(f[a.off+100 : b.off+int64(len(b.text))]) // newlines included
					return f
				})
				return want{good: 94, cut: size - a.off, segment: filepath.Base(p)}
			},
		},
		{
			name: "torn anchor of a new segment", maxSeg: 8 << 10,
			damage: func(t *testing.T, dir string, head uint64) want {
				p := lastSegment(t, dir)
				lines := readLines(t, p)
				rewrite(t, p, func(b []byte) []byte { return b[:30] })
				return want{good: lines[0].seq - 1, cut: 30, segment: filepath.Base(p)}
			},
		},
		{
			name: "empty segment left by a crash during rotation", maxSeg: 8 << 10,
			damage: func(t *testing.T, dir string, head uint64) want {
				if err := os.WriteFile(filepath.Join(dir, segmentName(head+1)), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return want{good: head, noNotice: true}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			buildLog(t, dir, 100, tt.maxSeg)
			head, _ := headOf(t, dir)
			w := tt.damage(t, dir, head)
			if _, err := Verify(dir); err == nil && !w.noNotice {
				t.Fatal("damage not seen by Verify")
			}

			l := openLog(t, dir, tt.maxSeg)
			seq, _ := l.Head()
			if w.noNotice {
				if seq != w.good {
					t.Fatalf("head %d, want %d", seq, w.good)
				}
			} else {
				// After the last good entry: the truncation entry, preceded by an anchor if
				// it opened a segment.
				es, err := l.ReadFrom(w.good, 10)
				if err != nil || len(es) < 2 || len(es) > 3 || es[len(es)-1].Seq != seq {
					t.Fatalf("ReadFrom(%d) up to head %d: %d entries, %v", w.good, seq, len(es), err)
				}
				for i := 1; i < len(es); i++ {
					if es[i].PrevHash != es[i-1].Hash {
						t.Fatalf("entry %d does not link", es[i].Seq)
					}
				}
				if len(es) == 3 && es[1].Kind != string(chain.KindAnchor) {
					t.Fatalf("entry %d is a %s", es[1].Seq, es[1].Kind)
				}
				var p chain.Payload
				if err := json.Unmarshal(es[len(es)-1].Payload, &p); err != nil {
					t.Fatal(err)
				}
				if p.Kind != chain.KindTruncation || p.Notice == nil || p.Notice.What != "torn_tail_truncated" ||
					p.Notice.Bytes != w.cut || p.Notice.Segment != w.segment {
					t.Fatalf("head entry %s %+v, want truncation of %d bytes of %s", p.Kind, p.Notice, w.cut, w.segment)
				}
			}
			appendEvents(t, l, 1000, 20, 5)
			seq, _ = l.Head()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, dir)

			// A second open finds nothing to repair.
			l = openLog(t, dir, tt.maxSeg)
			if s, _ := l.Head(); s != seq {
				t.Fatalf("head after reopen %d, want %d", s, seq)
			}
		})
	}
}

// headOf opens dir, reads its head and closes it.
func headOf(t *testing.T, dir string) (uint64, string) {
	t.Helper()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, h := l.Head()
	return s, h
}

func TestOpenRefusesCorruption(t *testing.T) {
	tests := []struct {
		name   string
		maxSeg int64
		// damage returns the segment index, seq and the offset the error must name (-1:
		// any offset).
		damage func(t *testing.T, dir string) (seg int, seq uint64, off int64)
		reason string
	}{
		{
			name: "bad entry followed by good ones", reason: "not a torn tail",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				p, ln := findLine(t, dir, 50)
				rewrite(t, p, func(b []byte) []byte { b[ln.off+300] ^= 0x01; return b })
				return 0, 50, ln.off
			},
		},
		{
			name: "line deleted in the middle", reason: "expected 60",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				p, ln := findLine(t, dir, 60)
				rewrite(t, p, func(b []byte) []byte { return splice(b, ln.off, ln.off+int64(len(ln.text)), nil) })
				return 0, 60, ln.off
			},
		},
		{
			name: "final entry duplicated", reason: "expected 101",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				p, ln := findLine(t, dir, 100)
				size := fileSize(t, p)
				rewrite(t, p, func(b []byte) []byte { return append(b, ln.text...) })
				return 0, 101, size
			},
		},
		{
			name: "a few NULs in the middle are not a crash", reason: "not a torn tail",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				p, ln := findLine(t, dir, 70)
				rewrite(t, p, func(b []byte) []byte { clear(b[ln.off+20 : ln.off+120]); return b })
				return 0, 70, ln.off
			},
		},
		{
			name: "torn tail at a seq the collector acknowledged", reason: "acknowledged up to seq 100",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				if err := writeAcked(dir, 100); err != nil {
					t.Fatal(err)
				}
				p, ln := findLine(t, dir, 100)
				rewrite(t, p, func(b []byte) []byte { return b[:len(b)-30] })
				return 0, 100, ln.off
			},
		},
		{
			name: "older segment's first entry damaged", maxSeg: 8 << 10, reason: "hash does not recompute",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				p := filepath.Join(dir, segmentNames(t, dir)[1])
				ln := readLines(t, p)[0]
				rewrite(t, p, func(b []byte) []byte { b[200] ^= 0x01; return b })
				return 1, ln.seq, 0
			},
		},
		{
			name: "older segment's last entry cut", maxSeg: 8 << 10, reason: "sealed segment",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				p := filepath.Join(dir, segmentNames(t, dir)[2])
				rewrite(t, p, func(b []byte) []byte { return b[:len(b)-7] })
				return 2, 0, -1
			},
		},
		{
			name: "middle segment removed", maxSeg: 8 << 10, reason: "expected",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				names := segmentNames(t, dir)
				if err := os.Remove(filepath.Join(dir, names[1])); err != nil {
					t.Fatal(err)
				}
				first, _ := parseSegmentName(names[1])
				return 1, first, 0 // index 1 is now the old names[2]
			},
		},
		{
			name: "empty middle segment", maxSeg: 8 << 10, reason: "empty",
			damage: func(t *testing.T, dir string) (int, uint64, int64) {
				p := filepath.Join(dir, segmentNames(t, dir)[1])
				ln := readLines(t, p)[0]
				if err := os.Truncate(p, 0); err != nil {
					t.Fatal(err)
				}
				return 1, ln.seq, 0
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			buildLog(t, dir, 100, tt.maxSeg)
			seg, seq, off := tt.damage(t, dir)
			names := segmentNames(t, dir)
			before := snapshot(t, dir)

			for range 2 { // refused every time, and the lock is released
				_, err := Open(dir, Options{MaxSegmentBytes: tt.maxSeg})
				ce, ok := errors.AsType[*CorruptionError](err)
				if !ok {
					t.Fatalf("Open = %v, want a *CorruptionError", err)
				}
				if ce.Segment != names[seg] || (seq != 0 && ce.Seq != seq) || (off >= 0 && ce.Offset != off) ||
					!strings.Contains(ce.Reason, tt.reason) {
					t.Fatalf("CorruptionError %+v, want segment %s seq %d offset %d reason ~%q", ce, names[seg], seq, off, tt.reason)
				}
			}
			if after := snapshot(t, dir); !equalSnapshots(before, after) {
				t.Fatal("Open changed a corrupted log")
			}
		})
	}
}

// snapshot returns the contents of the segment files of dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, name := range segmentNames(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		m[name] = b
	}
	return m
}

func equalSnapshots(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// FuzzRecover checks that Open and Verify never panic on a last segment of any content:
// a valid chain followed by arbitrary bytes. Open either repairs it (and the result
// verifies) or refuses it with a *CorruptionError.
func FuzzRecover(f *testing.F) {
	src := f.TempDir()
	l, err := Open(src, Options{Now: fixedNow})
	if err != nil {
		f.Fatal(err)
	}
	ps := make([]chain.Payload, 5)
	for i := range ps {
		ps[i] = eventPayload(i)
	}
	if _, err := l.Append(ps...); err != nil {
		f.Fatal(err)
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(filepath.Join(src, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, []byte{})
	f.Add(valid[:len(valid)/2], valid[len(valid)/2:len(valid)-3])
	f.Add(valid[:200], bytes.Repeat([]byte{0}, 600))
	f.Add([]byte{}, []byte("{\"hash\":\"\n\n"))
	f.Fuzz(func(t *testing.T, prefix, tail []byte) {
		if len(prefix) > len(valid) {
			prefix = prefix[:len(valid)]
		}
		dir := t.TempDir()
		content := append(append([]byte(nil), valid[:len(prefix)]...), tail...)
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), content, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = Verify(dir)
		l, err := Open(dir, Options{})
		if err != nil {
			if _, ok := errors.AsType[*CorruptionError](err); !ok {
				t.Fatalf("Open: %v, want nil or a *CorruptionError", err)
			}
			return
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if seq, _ := headOf(t, dir); seq > 0 {
			if _, err := Verify(dir); err != nil {
				t.Fatalf("Verify after a successful Open: %v", err)
			}
		}
	})
}
