package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixedNow is a deterministic clock for tests.
func fixedNow() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }

// eventPayload returns a realistic file tripwire event of roughly 400 bytes of payload.
func eventPayload(i int) chain.Payload {
	uid := int64(1000)
	return chain.Payload{
		Time: time.Date(2025, 3, 1, 12, 0, 0, i, time.UTC),
		Kind: chain.KindEvent,
		Event: &chain.Event{
			Type:     chain.TypeFile,
			Rule:     "aws-credentials-read",
			Severity: chain.SeverityCritical,
			Source:   "fanotify",
			Path:     "/home/deploy/.aws/credentials",
			Op:       "read",
			PID:      int32(4000 + i%1000),
			PPID:     1234,
			UID:      &uid,
			User:     "deploy",
			Exe:      "/usr/bin/python3.11",
			Cmdline:  fmt.Sprintf("python3 /opt/app/sync.py --profile prod --bucket backups-%d --region eu-west-1", i),
		},
	}
}

func openLog(t testing.TB, dir string, maxSeg int64) *Log {
	t.Helper()
	l, err := Open(dir, Options{MaxSegmentBytes: maxSeg, Now: fixedNow})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// appendEvents appends n events in calls of at most batch payloads and returns the
// positions Append gave them.
func appendEvents(t testing.TB, l *Log, from, n, batch int) []Position {
	t.Helper()
	var all []Position
	for i := 0; i < n; i += batch {
		k := min(batch, n-i)
		ps := make([]chain.Payload, k)
		for j := range ps {
			ps[j] = eventPayload(from + i + j)
		}
		pos, err := l.Append(ps...)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		all = append(all, pos...)
	}
	return all
}

func segmentNames(t testing.TB, dir string) []string {
	t.Helper()
	files, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	return names
}

// fileLine is one line of a segment file.
type fileLine struct {
	off  int64
	text []byte // with its newline
	seq  uint64
}

func readLines(t testing.TB, path string) []fileLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []fileLine
	for off := 0; off < len(b); {
		nl := bytes.IndexByte(b[off:], '\n')
		if nl < 0 {
			break
		}
		line := b[off : off+nl+1]
		e, err := parseLine(line)
		if err != nil {
			t.Fatalf("%s at %d: %v", path, off, err)
		}
		out = append(out, fileLine{off: int64(off), text: line, seq: e.Seq})
		off += nl + 1
	}
	return out
}

// findLine returns the segment path and line of seq.
func findLine(t testing.TB, dir string, seq uint64) (string, fileLine) {
	t.Helper()
	for _, name := range segmentNames(t, dir) {
		p := filepath.Join(dir, name)
		for _, ln := range readLines(t, p) {
			if ln.seq == seq {
				return p, ln
			}
		}
	}
	t.Fatalf("seq %d not found", seq)
	return "", fileLine{}
}

func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	names := segmentNames(t, dir)
	if len(names) == 0 {
		t.Fatal("no segments")
	}
	return filepath.Join(dir, names[len(names)-1])
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func mustVerify(t testing.TB, dir string) Report {
	t.Helper()
	rep, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// chainHash is chain.Hash over byte slices.
func chainHash(prev, payload []byte) string { return chain.Hash(string(prev), payload) }
