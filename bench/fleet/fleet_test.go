package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestStatFields(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       statFieldsT
		bad        bool
	}{
		{"plain", "4242 (postgres) S 4200 4242 4242 0 -1 4194560 100 0 0 0 731 69 0 0 20 0 1 0 123 456 789", statFieldsT{ppid: 4200, utime: 731, stime: 69}, false},
		{"name with spaces and parentheses", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0", statFieldsT{ppid: 1, utime: 5, stime: 6}, false},
		{"no name", "7 a R 1", statFieldsT{}, true},
		{"short", "7 (x) R 1 7", statFieldsT{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := statFields([]byte(tc.stat))
			if (err != nil) != tc.bad || got != tc.want {
				t.Errorf("statFields = %+v, %v; want %+v, error %v", got, err, tc.want, tc.bad)
			}
		})
	}
}

func TestReadProcSelf(t *testing.T) {
	u, err := readProc(os.Getpid())
	if err != nil || u.rssKiB == 0 {
		t.Fatalf("readProc(self) = %+v, %v", u, err)
	}
	if _, err := readTree(os.Getpid()); err != nil {
		t.Fatalf("readTree(self): %v", err)
	}
	if busy, total, err := machineTicks(); err != nil || busy > total || total == 0 {
		t.Fatalf("machineTicks = %d of %d, %v", busy, total, err)
	}
}

// TestMakeEntry checks that the simulated agents' entries are what the collector
// accepts: hashes linked, payloads starting with their seq, columns as the payload says.
func TestMakeEntry(t *testing.T) {
	prev := chain.GenesisPrev
	var es []batch.Entry
	for seq := uint64(1); seq <= 12; seq++ {
		e := makeEntry(seq, time.Now(), prev, seq%4 == 0)
		prev = e.Hash
		es = append(es, e)
	}
	for i, e := range es {
		if e.Hash != chain.Hash(e.PrevHash, e.Payload) || (i > 0 && e.PrevHash != es[i-1].Hash) {
			t.Errorf("seq %d: hash does not link", e.Seq)
		}
		if !strings.HasPrefix(string(e.Payload), fmt.Sprintf(`{"seq":%d,`, e.Seq)) {
			t.Errorf("seq %d: payload %s", e.Seq, e.Payload)
		}
		var p chain.Payload
		if err := json.Unmarshal(e.Payload, &p); err != nil || p.Seq != e.Seq || !p.Time.Equal(e.Time) || string(p.Kind) != e.Kind {
			t.Errorf("seq %d: payload %+v (%v) does not match the columns", e.Seq, p, err)
		}
		if (p.Event != nil) != (e.Kind == string(chain.KindEvent)) || (p.Event != nil && (p.Event.Type != e.Type || p.Event.Rule != e.Rule || p.Event.Severity != e.Severity)) {
			t.Errorf("seq %d: columns %s/%s/%s, payload event %+v", e.Seq, e.Type, e.Rule, e.Severity, p.Event)
		}
	}
	if _, err := batch.Decode(mustEncode(t, es)); err != nil {
		t.Fatalf("the entries do not round-trip through an Arrow batch: %v", err)
	}
}

func mustEncode(t *testing.T, es []batch.Entry) []byte {
	t.Helper()
	data, err := batch.Encode(es)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSimAgentChain checks the simulated agent's chain: entries made on demand when
// unbounded, kept from the last ack for resends, hashes kept for probes.
func TestSimAgentChain(t *testing.T) {
	a := &simAgent{base: 1, appended: make(chan struct{}, 1)}
	if es := a.readFrom(1, 10); len(es) != 0 {
		t.Fatalf("bounded, empty chain: %d entries", len(es))
	}
	a.setUnbounded(true)
	es := a.readFrom(1, 10)
	if len(es) != 10 || es[0].Seq != 1 || es[9].Seq != 10 || a.headSeq() != 10 {
		t.Fatalf("unbounded readFrom(1, 10) = %d entries, head %d", len(es), a.headSeq())
	}
	a.SetAcked(6)
	if got := a.readFrom(7, 10); len(got) != 10 || got[0].Seq != 7 || got[0].PrevHash != es[5].Hash {
		t.Fatalf("after ack 6, readFrom(7) = %d entries from %d", len(got), got[0].Seq)
	}
	if got := a.readFrom(3, 5); got != nil {
		t.Errorf("readFrom an acked seq = %d entries, want none", len(got))
	}
	if a.hashAt(3) != es[2].Hash || a.hashAt(0) != "" || a.hashAt(a.headSeq()+1) != "" {
		t.Errorf("hashAt does not answer probes from the chain")
	}
	a.setUnbounded(false)
	a.appendEvent()
	if a.headSeq() != 17 {
		t.Errorf("head after appendEvent = %d, want 17", a.headSeq())
	}
}
