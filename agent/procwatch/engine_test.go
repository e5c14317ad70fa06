package procwatch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// burstSource delivers n execs of "nc" as soon as it is read, then waits for close.
// It stands in for the kernel only to drive the engine's queue and loss accounting.
type burstSource struct {
	n       int
	kernel  uint64
	pushed  chan struct{}
	stop    chan struct{}
	stopped sync.Once
}

func (s *burstSource) mode() string   { return "test" }
func (s *burstSource) limits() string { return "test: sees what it is told" }
func (s *burstSource) read(push func(*execRecord)) error {
	for i := range s.n {
		push(&execRecord{pid: int32(1000 + i), uid: 0, filename: "/usr/bin/nc", exe: "/usr/bin/nc", comm: "nc", cmdline: "nc -l", missing: []string{fieldCwd}})
	}
	close(s.pushed)
	<-s.stop
	return nil
}
func (s *burstSource) kernelLost() (uint64, bool) { return s.kernel, true }
func (s *burstSource) close() error {
	s.stopped.Do(func() { close(s.stop) })
	return nil
}

func TestEngineAccountsForLosses(t *testing.T) {
	m, err := newMatcher([]Rule{{Name: "netcat", Severity: chain.SeverityCritical, Names: []string{"nc"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &burstSource{n: queueLen + 10, kernel: 3, pushed: make(chan struct{}), stop: make(chan struct{})}
	var mu sync.Mutex
	var losses []Loss
	e := newEngine(src, m, &enricher{hashes: newHashCache()}, Options{ExcludePID: -1, OnLoss: func(l Loss) {
		mu.Lock()
		defer mu.Unlock()
		losses = append(losses, l)
	}}.withDefaults(), "")
	<-src.pushed // the queue is full before Run starts

	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan chain.Event, 1)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, out) }()
	ev := <-out
	if ev.Rule != "netcat" || ev.PID != 1000 || ev.Cmdline != "nc -l" || ev.User != "root" || !slices.Equal(ev.Missing, []string{fieldCwd}) || ev.Source != "test" {
		t.Errorf("first event %+v", ev)
	}
	// out holds one event and nobody reads it: shutting down now cannot send the rest.
	for deadline := time.Now().Add(5 * time.Second); len(out) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no second event")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var kernel, full, shutdown uint64
	for _, l := range losses {
		switch l.Reason {
		case watcher.LossKernelOverflow:
			kernel += l.Count
			if !l.AtLeast {
				t.Errorf("kernel loss %+v is not marked at-least", l)
			}
		case watcher.LossBufferFull:
			full += l.Count
		case watcher.LossShutdown:
			shutdown += l.Count
		}
	}
	if kernel != 3 || full != 10 || shutdown == 0 {
		t.Errorf("losses %+v: want 3 kernel, 10 buffer full, some at shutdown", losses)
	}
	// Every exec was sent, lost at shutdown or counted as dropped.
	if sent := uint64(2); sent+full+shutdown != uint64(src.n) || e.Lost() != kernel+full+shutdown {
		t.Errorf("sent 2 + buffer full %d + shutdown %d != %d execs, or Lost %d", full, shutdown, src.n, e.Lost())
	}
	if err := e.Run(context.Background(), out); !errors.Is(err, ErrClosed) {
		t.Errorf("second Run = %v, want ErrClosed", err)
	}
	if e.Degraded() != "test: sees what it is told" {
		t.Errorf("Degraded = %q", e.Degraded())
	}
}

func TestEngineCloseWithoutRun(t *testing.T) {
	m, err := newMatcher([]Rule{{Name: "netcat", Names: []string{"nc"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &burstSource{n: 5, pushed: make(chan struct{}), stop: make(chan struct{})}
	e := newEngine(src, m, &enricher{hashes: newHashCache()}, Options{}.withDefaults(), "ebpf unavailable (x)")
	<-src.pushed
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if len(e.records) != 0 {
		t.Errorf("%d records left queued", len(e.records))
	}
	if err := e.Run(context.Background(), make(chan chain.Event)); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if want := "ebpf unavailable (x); test: sees what it is told"; e.Degraded() != want {
		t.Errorf("Degraded = %q, want %q", e.Degraded(), want)
	}
}

func TestEngineExcludesOnlyItsOwnPID(t *testing.T) {
	m, err := newMatcher([]Rule{{Name: "netcat", Names: []string{"nc"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &burstSource{n: 3, pushed: make(chan struct{}), stop: make(chan struct{})}
	e := newEngine(src, m, &enricher{hashes: newHashCache()}, Options{ExcludePID: 1001}.withDefaults(), "")
	<-src.pushed
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan chain.Event, 3)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, out) }()
	var pids []int32
	for range 2 {
		pids = append(pids, (<-out).PID)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 || !slices.Equal(pids, []int32{1000, 1002}) {
		t.Errorf("pids %v and %d more, want 1000 and 1002", pids, len(out))
	}
}
