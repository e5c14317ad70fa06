package watcher

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	const (
		ms = time.Millisecond
		w  = time.Second
	)
	type in struct {
		at    time.Duration
		pid   int32
		op    string
		count uint64
		path  string // set: an entry change, keyed by path
		ino   uint64
	}
	tests := []struct {
		name string
		ins  []in          // count 0: call due at this time
		want []string      // "pid op count"
		next time.Duration // when next says something is due after the ins (0: nothing)
	}{
		{
			name: "the first is sent at once",
			ins:  []in{{0, 1, OpRead, 3, "", 1}},
			want: []string{"1 read 3"},
			next: w,
		},
		{
			name: "repeats are summed and sent when the window ends",
			ins:  []in{{0, 1, OpRead, 1, "", 1}, {ms, 1, OpRead, 2, "", 1}, {2 * ms, 1, OpRead, 1, "", 1}, {w, 0, "", 0, "", 0}},
			want: []string{"1 read 1", "1 read 3"},
			next: 2 * w,
		},
		{
			name: "a summary opens the next window",
			ins:  []in{{0, 1, OpRead, 1, "", 1}, {ms, 1, OpRead, 1, "", 1}, {w, 0, "", 0, "", 0}, {w + ms, 1, OpRead, 1, "", 1}, {2 * w, 0, "", 0, "", 0}},
			want: []string{"1 read 1", "1 read 1", "1 read 1"},
			next: 3 * w,
		},
		{
			name: "a quiet window is forgotten",
			ins:  []in{{0, 1, OpRead, 1, "", 1}, {w, 0, "", 0, "", 0}, {w + ms, 1, OpRead, 1, "", 1}},
			want: []string{"1 read 1", "1 read 1"},
			next: 2*w + ms,
		},
		{
			name: "a window ended but not yet seen by due joins the summary",
			ins:  []in{{0, 1, OpRead, 1, "", 1}, {ms, 1, OpRead, 4, "", 1}, {w + ms, 1, OpRead, 1, "", 1}},
			want: []string{"1 read 1", "1 read 5"},
			next: 2*w + ms,
		},
		{
			name: "pid, op and file each make their own burst",
			ins:  []in{{0, 1, OpRead, 1, "", 1}, {0, 2, OpRead, 1, "", 1}, {0, 1, OpWrite, 1, "", 1}, {0, 1, OpRead, 1, "", 2}},
			want: []string{"1 read 1", "2 read 1", "1 write 1", "1 read 1"},
			next: w,
		},
		{
			name: "entry changes are keyed by path, not inode",
			ins:  []in{{0, 1, OpCreate, 1, "/d/tmp", 5}, {ms, 1, OpCreate, 1, "/d/tmp", 6}, {ms, 1, OpCreate, 1, "/d/other", 7}, {w, 0, "", 0, "", 0}},
			want: []string{"1 create 1", "1 create 1", "1 create 1"},
			next: w + ms,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Unix(1_000_000, 0)
			l := newLimiter(w)
			var got []string
			emit := func(e emission) { got = append(got, fmt.Sprintf("%d %s %d", e.key.pid, e.op, e.count)) }
			for _, x := range tt.ins {
				if x.count == 0 {
					l.due(t0.Add(x.at), emit)
					continue
				}
				e := emission{key: sessionKey{pid: x.pid, file: fileID{1, x.ino}}, op: x.op, count: x.count, path: x.path}
				if x.path != "" {
					e.rules = []ruleRef{{Name: "r"}}
				}
				l.add(e, t0.Add(x.at), emit)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("emitted %q, want %q", got, tt.want)
			}
			at, ok := l.next()
			if tt.next == 0 && ok || tt.next != 0 && (!ok || !at.Equal(t0.Add(tt.next))) {
				t.Errorf("next = %v, %v; want +%v", at.Sub(t0), ok, tt.next)
			}
		})
	}
}

func TestLimiterFlushAll(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLimiter(time.Second)
	var got []uint64
	emit := func(e emission) { got = append(got, e.count) }
	l.add(emission{key: sessionKey{pid: 1}, op: OpRead, count: 1}, t0, emit)
	l.add(emission{key: sessionKey{pid: 1}, op: OpRead, count: 7}, t0, emit)
	l.add(emission{key: sessionKey{pid: 2}, op: OpRead, count: 1}, t0, emit)
	l.flushAll(emit)
	if !slices.Equal(got, []uint64{1, 1, 7}) || len(l.bursts) != 0 {
		t.Fatalf("emitted counts %v, %d bursts left; want [1 1 7], 0", got, len(l.bursts))
	}
}
