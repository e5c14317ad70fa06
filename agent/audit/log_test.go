package audit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestAppendReopen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 0)
	if seq, hash := l.Head(); seq != 0 || hash != chain.GenesisPrev {
		t.Fatalf("empty head = %d %s", seq, hash)
	}
	pos := appendEvents(t, l, 0, 100, 7)
	for i, p := range pos {
		if p.Seq != uint64(i+1) {
			t.Fatalf("position %d has seq %d", i, p.Seq)
		}
	}
	seq, hash := l.Head()
	if seq != 100 || hash != pos[99].Hash {
		t.Fatalf("head = %d %s, want 100 %s", seq, hash, pos[99].Hash)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir, 0)
	if s, h := l.Head(); s != seq || h != hash {
		t.Fatalf("reopened head = %d %s, want %d %s", s, h, seq, hash)
	}
	more := appendEvents(t, l, 100, 5, 5)
	if more[0].Seq != 101 {
		t.Fatalf("first seq after reopen = %d", more[0].Seq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if rep.Entries != 105 || rep.LastSeq != 105 || rep.LastHash != more[4].Hash || rep.Segments != 1 {
		t.Fatalf("report = %+v", rep)
	}
}

func TestStoredPayloadIsCanonical(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 0)
	in := eventPayload(3)
	pos, err := l.Append(in)
	if err != nil {
		t.Fatal(err)
	}
	_, ln := findLine(t, dir, pos[0].Seq)
	e, err := parseLine(ln.text)
	if err != nil {
		t.Fatal(err)
	}
	in.Seq = pos[0].Seq
	want, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Payload) != string(want) {
		t.Fatalf("stored payload\n%s\nwant json.Marshal\n%s", e.Payload, want)
	}
	if got := chain.Hash(chain.GenesisPrev, want); got != pos[0].Hash || string(e.Hash) != got {
		t.Fatalf("hash = %s, stored %s, Append said %s", got, e.Hash, pos[0].Hash)
	}
	// The line is also plain JSON with the payload as an object.
	var line struct {
		Hash, Prev string
		Payload    chain.Payload
	}
	if err := json.Unmarshal(ln.text, &line); err != nil || line.Payload.Seq != 1 || line.Prev != chain.GenesisPrev {
		t.Fatalf("line as JSON: %+v, %v", line, err)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 8<<10)
	var pos []Position
	for i, batch := range []int{1, 3, 40, 1, 17, 100, 2} {
		pos = append(pos, appendEvents(t, l, i*1000, batch*3, batch)...)
	}
	names := segmentNames(t, dir)
	if len(names) < 5 {
		t.Fatalf("%d segments, want several", len(names))
	}

	// Every segment but the first opens with an anchor naming where the last one ended.
	var prevName string
	var prevLast fileLine
	var total uint64
	for i, name := range names {
		lines := readLines(t, filepath.Join(dir, name))
		first, _ := parseSegmentName(name)
		if lines[0].seq != first {
			t.Fatalf("%s starts with seq %d", name, lines[0].seq)
		}
		if size := fileSize(t, filepath.Join(dir, name)); i < len(names)-1 && size > 8<<10 {
			t.Errorf("%s is %d bytes, over the bound", name, size)
		}
		e, _ := parseLine(lines[0].text)
		var p chain.Payload
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if p.Kind != chain.KindEvent || string(e.Prev) != chain.GenesisPrev {
				t.Fatalf("first segment opens with %s, prev %s", p.Kind, e.Prev)
			}
		} else {
			prev, _ := parseLine(prevLast.text)
			want := chain.Anchor{PrevSegment: prevName, PrevSeq: prevLast.seq, PrevHash: string(prev.Hash)}
			if p.Kind != chain.KindAnchor || p.Anchor == nil || *p.Anchor != want || string(e.Prev) != want.PrevHash {
				t.Fatalf("%s opens with %s %+v, want anchor %+v", name, p.Kind, p.Anchor, want)
			}
		}
		prevName, prevLast = name, lines[len(lines)-1]
		total += uint64(len(lines))
	}

	head, _ := l.Head()
	if head != total || head != pos[len(pos)-1].Seq {
		t.Fatalf("head %d, %d lines, last appended %d", head, total, pos[len(pos)-1].Seq)
	}
	if sz := l.SizeBytes(); sz <= 0 {
		t.Fatalf("SizeBytes = %d", sz)
	}
	rep := mustVerify(t, dir)
	if rep.Entries != head || rep.Segments != len(names) {
		t.Fatalf("report %+v, head %d, %d segments", rep, head, len(names))
	}

	// ReadFrom crosses segment boundaries and includes the anchors.
	all, err := l.ReadFrom(1, int(head)+10)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(all)) != head {
		t.Fatalf("ReadFrom returned %d entries, want %d", len(all), head)
	}
	anchors := 0
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		if i > 0 && e.PrevHash != all[i-1].Hash {
			t.Fatalf("entry %d prev does not link", e.Seq)
		}
		if e.Kind == string(chain.KindAnchor) {
			anchors++
		}
	}
	if anchors != len(names)-1 {
		t.Fatalf("%d anchors read, want %d", anchors, len(names)-1)
	}

	// Reopen and keep going: the chain still verifies.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, 8<<10)
	appendEvents(t, l, 9000, 50, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir)
}

func TestAppendRefuses(t *testing.T) {
	huge := eventPayload(1)
	huge.Event.Cmdline = strings.Repeat("x", MaxPayloadBytes)
	tests := []struct {
		name string
		p    chain.Payload
	}{
		{"no kind", chain.Payload{}},
		{"anchor", chain.Payload{Kind: chain.KindAnchor, Anchor: &chain.Anchor{}}},
		{"too large", huge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openLog(t, t.TempDir(), 0)
			_, err := l.Append(eventPayload(0), tt.p)
			if !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("Append: %v, want ErrInvalidPayload", err)
			}
			if seq, _ := l.Head(); seq != 0 {
				t.Fatalf("head %d after a refused call", seq)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	openLog(t, dir, 0)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestClosed(t *testing.T) {
	l := openLog(t, t.TempDir(), 0)
	appendEvents(t, l, 0, 3, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(eventPayload(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := l.ReadFrom(1, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadFrom after Close: %v", err)
	}
	if err := l.SetAcked(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetAcked after Close: %v", err)
	}
}

func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 32<<10)
	const producers, calls = 6, 60
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[uint64]bool{}
		n    int
	)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				batch := 1 + (p*calls+c)%9
				ps := make([]chain.Payload, batch)
				for i := range ps {
					ps[i] = eventPayload(p*100000 + c*10 + i)
				}
				pos, err := l.Append(ps...)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				for _, x := range pos {
					if seen[x.Seq] {
						t.Errorf("seq %d given twice", x.Seq)
					}
					seen[x.Seq] = true
				}
				n += len(pos)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	head, _ := l.Head()
	anchors := len(segmentNames(t, dir)) - 1
	if int(head) != n+anchors {
		t.Fatalf("head %d, %d events + %d anchors", head, n, anchors)
	}
	// Events and anchors together fill 1..head without a gap.
	all, err := l.ReadFrom(1, int(head))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) || (e.Kind == string(chain.KindEvent)) != seen[e.Seq] {
			t.Fatalf("entry %d: seq %d kind %s, seen by Append %v", i, e.Seq, e.Kind, seen[e.Seq])
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir); rep.Entries != head {
		t.Fatalf("verified %d of %d", rep.Entries, head)
	}
}

func TestAckedPointer(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 0)
	appendEvents(t, l, 0, 50, 10)
	steps := []struct {
		name    string
		set     uint64
		wantErr error
		want    uint64
	}{
		{"forward", 10, nil, 10},
		{"further", 30, nil, 30},
		{"backwards is ignored", 20, nil, 30},
		{"same is ignored", 30, nil, 30},
		{"beyond head is refused", 51, ErrAckBeyondHead, 30},
		{"up to head", 40, nil, 40},
	}
	for _, s := range steps {
		err := l.SetAcked(s.set)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: SetAcked(%d) = %v, want %v", s.name, s.set, err, s.wantErr)
		}
		if got := l.Acked(); got != s.want {
			t.Fatalf("%s: Acked = %d, want %d", s.name, got, s.want)
		}
	}
	if d := l.QueueDepth(); d != 10 {
		t.Fatalf("QueueDepth = %d", d)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ackedFile))
	if err != nil || string(b) != "40\n" {
		t.Fatalf("acked file %q, %v", b, err)
	}
	l = openLog(t, dir, 0)
	if got := l.Acked(); got != 40 {
		t.Fatalf("Acked after reopen = %d", got)
	}
	if err := l.SetAcked(5); err != nil || l.Acked() != 40 {
		t.Fatalf("SetAcked(5) after reopen: %v, acked %d", err, l.Acked())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// An acked seq beyond the head (entries lost under it) is clamped, not trusted.
	if err := writeAcked(dir, 999); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, 0)
	if got := l.Acked(); got != 50 {
		t.Fatalf("Acked with a file beyond head = %d, want 50", got)
	}
}

func TestGroupCommitSharesFsync(t *testing.T) {
	l := openLog(t, t.TempDir(), 0)
	appendEvents(t, l, 0, 1, 1)
	before := l.fsyncs.Load()

	// Hold the flusher's lock as an in-flight fsync would: callers stage and queue.
	const callers = 8
	l.flushMu.Lock()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.Append(eventPayload(i), eventPayload(i+100))
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		staged := l.stSeq
		l.mu.Unlock()
		if staged == 1+2*callers {
			break
		}
		if time.Now().After(deadline) {
			l.flushMu.Unlock()
			t.Fatalf("only %d entries staged", staged)
		}
		time.Sleep(time.Millisecond)
	}
	l.flushMu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := l.fsyncs.Load() - before; n != 1 {
		t.Fatalf("%d callers took %d fsyncs, want 1", callers, n)
	}
	if seq, _ := l.Head(); seq != 1+2*callers {
		t.Fatalf("head %d", seq)
	}
}

func TestWriteErrorBreaksLog(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 0)
	appendEvents(t, l, 0, 10, 10)
	// Pull the segment out from under the writer, as a failing disk would.
	l.flushMu.Lock()
	_ = l.f.Close()
	l.flushMu.Unlock()

	if _, err := l.Append(eventPayload(1)); !errors.Is(err, ErrBroken) {
		t.Fatalf("Append on a failing disk: %v, want ErrBroken", err)
	}
	if _, err := l.Append(eventPayload(2)); !errors.Is(err, ErrBroken) {
		t.Fatalf("Append after a failure: %v, want ErrBroken", err)
	}
	if seq, _ := l.Head(); seq != 10 {
		t.Fatalf("head moved to %d", seq)
	}
	_ = l.Close() // reports the already closed file

	l = openLog(t, dir, 0)
	if seq, _ := l.Head(); seq != 10 {
		t.Fatalf("head after reopen %d", seq)
	}
	appendEvents(t, l, 10, 5, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir)
}
