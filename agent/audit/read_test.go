package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestReadFrom(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 64<<10)
	pos := appendEvents(t, l, 0, 600, 50)
	head, _ := l.Head()
	if len(segmentNames(t, dir)) < 3 {
		t.Fatal("want several segments")
	}
	tests := []struct {
		name      string
		seq       uint64
		max       int
		wantFirst uint64
		wantN     int
	}{
		{"from the start", 1, 10, 1, 10},
		{"seq 0 reads from 1", 0, 3, 1, 3},
		{"the middle", 250, 100, 250, 100},
		{"up to the head", head - 4, 100, head - 4, 5},
		{"the head alone", head, 1, head, 1},
		{"beyond the head", head + 1, 10, 0, 0},
		{"max 0", 5, 0, 0, 0},
		{"everything", 1, 1 << 20, 1, int(head)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := l.ReadFrom(tt.seq, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != tt.wantN {
				t.Fatalf("%d entries, want %d", len(es), tt.wantN)
			}
			for i, e := range es {
				if e.Seq != tt.wantFirst+uint64(i) {
					t.Fatalf("entry %d has seq %d", i, e.Seq)
				}
				if chain.Hash(e.PrevHash, e.Payload) != e.Hash {
					t.Fatalf("entry %d does not hash", e.Seq)
				}
			}
		})
	}

	// Entries carry the flattened event columns and match what Append returned.
	byHash := map[string]bool{}
	for _, p := range pos {
		byHash[p.Hash] = true
	}
	all, err := l.ReadFrom(1, int(head))
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	for _, e := range all {
		switch e.Kind {
		case string(chain.KindEvent):
			events++
			if !byHash[e.Hash] || e.Type != chain.TypeFile || e.Rule != "aws-credentials-read" ||
				e.Severity != chain.SeverityCritical || e.Time.IsZero() {
				t.Fatalf("event %d: %+v", e.Seq, e)
			}
		case string(chain.KindAnchor):
			if e.Type != "" || e.Rule != "" {
				t.Fatalf("anchor %d has event columns", e.Seq)
			}
		default:
			t.Fatalf("entry %d of kind %s", e.Seq, e.Kind)
		}
	}
	if events != len(pos) {
		t.Fatalf("%d events read, %d appended", events, len(pos))
	}

	// Sequential reads in odd batch sizes, as the shipper does, then the same after a
	// reopen (no in-memory index for the older segments).
	for round := range 2 {
		var got []uint64
		for next := uint64(1); next <= head; {
			es, err := l.ReadFrom(next, 37)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				got = append(got, e.Seq)
			}
			next += uint64(len(es))
		}
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("round %d: position %d has seq %d", round, i, s)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l = openLog(t, dir, 64<<10)
	}
}

func TestReadFromFollowsAppends(t *testing.T) {
	// A shipper-like reader follows concurrent appenders through rotations, woken by
	// Appended, and sees every durable entry exactly once, in order.
	dir := t.TempDir()
	l := openLog(t, dir, 16<<10)
	const producers, perProducer = 3, 300
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perProducer; i += 10 {
				ps := make([]chain.Payload, 10)
				for j := range ps {
					ps[j] = eventPayload(p*10000 + i + j)
				}
				if _, err := l.Append(ps...); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}

	var events int
	next := uint64(1)
	var prevHash = chain.GenesisPrev
	for events < producers*perProducer {
		es, err := l.ReadFrom(next, 64)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Seq != next || e.PrevHash != prevHash {
				t.Fatalf("read seq %d (prev %s), want %d (prev %s)", e.Seq, e.PrevHash[:8], next, prevHash[:8])
			}
			if head, _ := l.Head(); e.Seq > head {
				t.Fatalf("read seq %d beyond the durable head %d", e.Seq, head)
			}
			next, prevHash = e.Seq+1, e.Hash
			if e.Kind == string(chain.KindEvent) {
				events++
			}
		}
		if len(es) == 0 {
			select {
			case <-l.Appended():
			case <-ctx.Done():
				t.Fatalf("stuck at seq %d with %d events", next, events)
			}
		}
	}
	wg.Wait()
	if err := l.SetAcked(next - 1); err != nil {
		t.Fatal(err)
	}
	if d := l.QueueDepth(); d != 0 {
		t.Fatalf("QueueDepth %d after reading and acking everything", d)
	}
}

func TestReadFromCorruption(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 0)
	appendEvents(t, l, 0, 50, 50)
	p, ln := findLine(t, dir, 20)
	rewrite(t, p, func(b []byte) []byte { b[ln.off+3] = 'X'; return b })

	es, err := l.ReadFrom(10, 30)
	ce, ok := errors.AsType[*CorruptionError](err)
	if !ok || ce.Seq != 20 || ce.Offset != ln.off {
		t.Fatalf("ReadFrom = %v, want a *CorruptionError at seq 20 offset %d", err, ln.off)
	}
	if len(es) != 10 || es[9].Seq != 19 {
		t.Fatalf("got %d entries before the damage", len(es))
	}
}
