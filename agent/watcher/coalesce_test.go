package watcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

type step struct {
	at  time.Duration // since t0
	pid int32
	acc access // 0: call due at this time
}

func TestCoalescer(t *testing.T) {
	const (
		ms = time.Millisecond
		w  = 100 * ms
	)
	tests := []struct {
		name  string
		steps []step
		due   time.Duration // when due() is called after the steps (0: not)
		want  []string      // "pid op count"
		left  int           // sessions left open
	}{
		{
			name:  "cat: open, read, close is one read",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accRead}, {2 * ms, 1, accRead}, {3 * ms, 1, accCloseNoWrite}},
			want:  []string{"1 read 2"},
		},
		{
			name:  "merged read and close",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accRead | accCloseNoWrite}},
			want:  []string{"1 read 1"},
		},
		{
			name:  "append: open, write, close-write",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accWrite}, {2 * ms, 1, accCloseWrite}},
			want:  []string{"1 write 1"},
		},
		{
			name:  "read and write in one session are two events",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accRead}, {2 * ms, 1, accWrite}, {3 * ms, 1, accRead}, {4 * ms, 1, accCloseWrite}},
			want:  []string{"1 read 2", "1 write 1"},
		},
		{
			name:  "open without io is reported at close",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accCloseNoWrite}},
			want:  []string{"1 open 1"},
		},
		{
			name:  "touch: opened for writing, nothing written",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accCloseWrite}},
			want:  []string{"1 close_write 1"},
		},
		{
			name:  "two processes are two sessions",
			steps: []step{{0 * ms, 1, accOpen}, {0 * ms, 2, accOpen}, {1 * ms, 1, accRead}, {1 * ms, 2, accRead}, {2 * ms, 2, accCloseNoWrite}, {3 * ms, 1, accCloseNoWrite}},
			want:  []string{"2 read 1", "1 read 1"},
		},
		{
			name:  "two opens: the session lasts until the last close",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accOpen}, {2 * ms, 1, accRead}, {3 * ms, 1, accCloseNoWrite}, {4 * ms, 1, accRead}},
			want:  []string{"1 read 1"},
			left:  1,
		},
		{
			name:  "a long read is sent after the window with the count so far",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accRead}, {50 * ms, 1, accRead}, {99 * ms, 1, accRead}},
			due:   101 * time.Millisecond,
			want:  []string{"1 read 3"},
			left:  1,
		},
		{
			name:  "not yet due",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accRead}},
			due:   50 * time.Millisecond,
			left:  1,
		},
		{
			name:  "reads after the event are counted silently",
			steps: []step{{0 * ms, 1, accOpen}, {1 * ms, 1, accRead}, {2 * w, 0, 0}, {2*w + ms, 1, accRead}, {2*w + 2*ms, 1, accCloseNoWrite}},
			want:  []string{"1 read 1"},
		},
		{
			name:  "an open held without io is reported after the grace",
			steps: []step{{0 * ms, 1, accOpen}},
			due:   2 * w,
			want:  []string{"1 open 1"},
			left:  1,
		},
		{
			name:  "exec is reported at once, and nothing else of its session",
			steps: []step{{0 * ms, 1, accExec}, {0 * ms, 1, accOpen}, {1 * ms, 1, accRead}, {2 * w, 0, 0}, {3 * w, 1, accCloseNoWrite}},
			want:  []string{"1 exec 1"},
		},
		{
			name:  "exec held until exit",
			steps: []step{{0 * ms, 1, accExec}, {0 * ms, 1, accOpen}},
			due:   3 * w,
			want:  []string{"1 exec 1"},
			left:  1,
		},
		{
			name:  "close without a seen open ends the session",
			steps: []step{{0 * ms, 1, accRead}, {1 * ms, 1, accCloseNoWrite}},
			want:  []string{"1 read 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Unix(1_000_000, 0)
			c := newCoalescer(w)
			var got []string
			emit := func(e emission) { got = append(got, fmt.Sprintf("%d %s %d", e.key.pid, e.op, e.count)) }
			for _, s := range tt.steps {
				at := t0.Add(s.at)
				if s.acc == 0 {
					c.due(at, emit)
					continue
				}
				c.add(rawEvent{acc: s.acc, pid: s.pid, file: fileID{1, 2}, path: "/f", at: at}, emit)
			}
			if tt.due > 0 {
				c.due(t0.Add(tt.due), emit)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("emitted %q, want %q", got, tt.want)
			}
			if len(c.sessions) != tt.left {
				t.Errorf("%d sessions left, want %d", len(c.sessions), tt.left)
			}
		})
	}
}

func TestCoalescerNextAndReap(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	c := newCoalescer(100 * time.Millisecond)
	if _, ok := c.next(); ok {
		t.Fatal("next on an empty coalescer")
	}
	var got []string
	emit := func(e emission) { got = append(got, e.op) }
	c.add(rawEvent{acc: accOpen, pid: 7, file: fileID{1, 1}, at: t0}, emit)
	if at, ok := c.next(); !ok || !at.Equal(t0.Add(200*time.Millisecond)) {
		t.Fatalf("next = %v, %v; want open grace at +200ms", at, ok)
	}
	c.add(rawEvent{acc: accRead, pid: 7, file: fileID{1, 1}, at: t0.Add(10 * time.Millisecond)}, emit)
	if at, ok := c.next(); !ok || !at.Equal(t0.Add(110*time.Millisecond)) {
		t.Fatalf("next = %v, %v; want read window at +110ms", at, ok)
	}
	c.reap(t0.Add(time.Second), func(int32) bool { return true }, emit)
	if len(c.sessions) != 1 {
		t.Fatal("reaped a live process's session")
	}
	c.reap(t0.Add(time.Second), func(int32) bool { return false }, emit)
	if len(c.sessions) != 0 || strings.Join(got, ",") != "read" {
		t.Fatalf("after reaping a dead process: %d sessions, emitted %v; want 0, [read]", len(c.sessions), got)
	}
}
