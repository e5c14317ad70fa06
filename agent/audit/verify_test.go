package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// buildLog writes n events into dir with the given segment bound and closes the log.
func buildLog(t *testing.T, dir string, n int, maxSeg int64) {
	t.Helper()
	l := openLog(t, dir, maxSeg)
	appendEvents(t, l, 0, n, 16)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// rewrite replaces the bytes of a segment file.
func rewrite(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// splice returns b with b[from:to] replaced by repl.
func splice(b []byte, from, to int64, repl []byte) []byte {
	out := append([]byte(nil), b[:from]...)
	out = append(out, repl...)
	return append(out, b[to:]...)
}

func TestVerifyFindsTampering(t *testing.T) {
	tests := []struct {
		name   string
		maxSeg int64
		// tamper damages the log in dir; for multi-segment cases it returns the seq
		// VerifyError must name, otherwise 0 and seq holds it.
		tamper func(t *testing.T, dir string) uint64
		seq    uint64
		reason string // a substring of the reason
	}{
		{
			name: "byte flipped inside a payload", seq: 57, reason: "hash does not recompute",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 57)
				i := ln.off + int64(bytes.Index(ln.text, []byte("aws-credentials")))
				rewrite(t, p, func(b []byte) []byte { b[i] ^= 0x01; return b })
				return 0
			},
		},
		{
			name: "payload edited to another valid value", seq: 120, reason: "hash does not recompute",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 120)
				i := ln.off + int64(bytes.Index(ln.text, []byte(`"deploy"`)))
				rewrite(t, p, func(b []byte) []byte { return splice(b, i, i+8, []byte(`"nobody"`)) })
				return 0
			},
		},
		{
			name: "stored hash altered", seq: 30, reason: "hash does not recompute",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 30)
				rewrite(t, p, func(b []byte) []byte { b[ln.off+int64(hashOff)+5] ^= 0x03; return b })
				return 0
			},
		},
		{
			name: "prev altered", seq: 31, reason: "prev does not match the hash of seq 30",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 31)
				rewrite(t, p, func(b []byte) []byte { b[ln.off+int64(prevOff)+7] ^= 0x03; return b })
				return 0
			},
		},
		{
			name: "line deleted", seq: 80, reason: "entry has seq 81, expected 80",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 80)
				rewrite(t, p, func(b []byte) []byte { return splice(b, ln.off, ln.off+int64(len(ln.text)), nil) })
				return 0
			},
		},
		{
			name: "lines swapped", seq: 90, reason: "entry has seq 91, expected 90",
			tamper: func(t *testing.T, dir string) uint64 {
				p, a := findLine(t, dir, 90)
				_, b := findLine(t, dir, 91)
				both := append(append([]byte(nil), b.text...), a.text...)
				rewrite(t, p, func(f []byte) []byte { return splice(f, a.off, b.off+int64(len(b.text)), both) })
				return 0
			},
		},
		{
			name: "line duplicated", seq: 11, reason: "entry has seq 10, expected 11",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 10)
				end := ln.off + int64(len(ln.text))
				rewrite(t, p, func(b []byte) []byte { return splice(b, end, end, ln.text) })
				return 0
			},
		},
		{
			name: "line made unparsable", seq: 44, reason: "canonical form",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 44)
				rewrite(t, p, func(b []byte) []byte { b[ln.off+2] = 'H'; return b })
				return 0
			},
		},
		{
			name: "rewritten line with a recomputed hash breaks the next link", seq: 61, reason: "prev does not match",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 60)
				e, _ := parseLine(ln.text)
				payload := bytes.Replace(e.Payload, []byte("deploy"), []byte("nobody"), 1)
				hash := []byte(chainHash(e.Prev, payload))
				line := appendLine(nil, hash, e.Prev, payload)
				rewrite(t, p, func(b []byte) []byte { return splice(b, ln.off, ln.off+int64(len(ln.text)), line) })
				return 0
			},
		},
		{
			name: "newline removed between two lines", seq: 70, reason: "hash does not recompute",
			tamper: func(t *testing.T, dir string) uint64 {
				p, ln := findLine(t, dir, 70)
				rewrite(t, p, func(b []byte) []byte { return splice(b, ln.off+int64(len(ln.text))-1, ln.off+int64(len(ln.text)), nil) })
				return 0
			},
		},
		{
			name: "middle segment removed", maxSeg: 8 << 10, reason: "expected",
			tamper: func(t *testing.T, dir string) uint64 {
				names := segmentNames(t, dir)
				if err := os.Remove(filepath.Join(dir, names[2])); err != nil {
					t.Fatal(err)
				}
				first, _ := parseSegmentName(names[2])
				return first // names[3] opens with a later seq
			},
		},
		{
			name: "anchor replaced by a rehashed entry of another kind", maxSeg: 8 << 10, reason: "not an anchor",
			tamper: func(t *testing.T, dir string) uint64 {
				p := filepath.Join(dir, segmentNames(t, dir)[3])
				ln := readLines(t, p)[0]
				e, _ := parseLine(ln.text)
				payload := bytes.Replace(e.Payload, []byte(`"anchor"`), []byte(`"agent"`), 1)
				line := appendLine(nil, []byte(chainHash(e.Prev, payload)), e.Prev, payload)
				rewrite(t, p, func(b []byte) []byte { return splice(b, 0, int64(len(ln.text)), line) })
				return ln.seq
			},
		},
		{
			name: "anchor naming the wrong previous seq, rehashed", maxSeg: 8 << 10, reason: "anchor names previous seq",
			tamper: func(t *testing.T, dir string) uint64 {
				p := filepath.Join(dir, segmentNames(t, dir)[2])
				ln := readLines(t, p)[0]
				e, _ := parseLine(ln.text)
				payload := bytes.Replace(e.Payload, []byte(`"prev_seq":`), []byte(`"prev_seq":1`), 1)
				line := appendLine(nil, []byte(chainHash(e.Prev, payload)), e.Prev, payload)
				rewrite(t, p, func(b []byte) []byte { return splice(b, 0, int64(len(ln.text)), line) })
				return ln.seq
			},
		},
		{
			name: "final line cut short", seq: 200, reason: "not terminated",
			tamper: func(t *testing.T, dir string) uint64 {
				p := lastSegment(t, dir)
				rewrite(t, p, func(b []byte) []byte { return b[:len(b)-40] })
				return 0
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			buildLog(t, dir, 200, tt.maxSeg)
			want := tt.seq
			if got := tt.tamper(t, dir); got != 0 {
				want = got
			}
			rep, err := Verify(dir)
			ve, ok := errors.AsType[*VerifyError](err)
			if !ok {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if ve.Seq != want || !strings.Contains(ve.Reason, tt.reason) {
				t.Fatalf("VerifyError seq %d reason %q, want seq %d reason ~%q", ve.Seq, ve.Reason, want, tt.reason)
			}
			if rep.LastSeq != ve.Seq-1 || rep.Entries != ve.Seq-1 {
				t.Fatalf("report %+v for an error at seq %d", rep, ve.Seq)
			}
			// The offset names the start of the bad line.
			b, err := os.ReadFile(filepath.Join(dir, ve.Segment))
			if err != nil {
				t.Fatal(err)
			}
			if ve.Offset < 0 || ve.Offset > int64(len(b)) || (ve.Offset > 0 && b[ve.Offset-1] != '\n') {
				t.Fatalf("offset %d is not a line start in %s", ve.Offset, ve.Segment)
			}
		})
	}
}

func TestVerifyDetectsAcrossBlocks(t *testing.T) {
	// Enough entries to span several read blocks and exercise the parallel hashing.
	dir := t.TempDir()
	l := openLog(t, dir, 0)
	appendEvents(t, l, 0, 30000, 1000)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if rep.Entries != 30000 || rep.Bytes != fileSize(t, lastSegment(t, dir)) {
		t.Fatalf("report %+v", rep)
	}
	for _, seq := range []uint64{29999, 15000, 2} {
		p, ln := findLine(t, dir, seq)
		i := ln.off + int64(len(ln.text)) - 10
		rewrite(t, p, func(b []byte) []byte { b[i] ^= 0x04; return b })
		_, err := Verify(dir)
		if ve, ok := errors.AsType[*VerifyError](err); !ok || ve.Seq != seq {
			t.Fatalf("after flipping seq %d: %v", seq, err)
		}
	}
}

func TestVerifyEmptyAndIncomplete(t *testing.T) {
	dir := t.TempDir()
	if _, err := Verify(dir); !errors.Is(err, ErrNoSegments) {
		t.Fatalf("empty dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(dir)
	if ve, ok := errors.AsType[*VerifyError](err); !ok || !ve.Incomplete || ve.Seq != 1 {
		t.Fatalf("empty segment: %v", err)
	}
	if _, err := Verify(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing dir verified")
	}
}
