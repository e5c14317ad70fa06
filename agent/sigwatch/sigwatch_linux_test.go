package sigwatch

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/internal/watchtest"
)

func needRoot(t *testing.T) {
	watchtest.RequireRoot(t, "CAP_BPF, CAP_PERFMON to load the signal tracepoint")
}

func pinDir(t *testing.T) string {
	dir := filepath.Join("/sys/fs/bpf/tripwire-test", strconv.Itoa(os.Getpid())+"-"+t.Name())
	t.Cleanup(func() { os.RemoveAll(dir); os.Remove(filepath.Dir(dir)) })
	return dir
}

// TestSignalToAgentNamesSender sends SIGUSR1 to this process from a kill(1) child and
// expects the record to name that child, and no record of the SIGURG it sends itself
// first (as the Go runtime does to preempt its threads).
func TestSignalToAgentNamesSender(t *testing.T) {
	needRoot(t)
	w, err := Start(os.Getpid(), pinDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	got := make(chan Signal, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, 100*time.Millisecond, func(s Signal) { got <- s }) }()

	// The Go runtime preempts its threads with SIGURG sent to itself: never recorded.
	if err := syscall.Kill(os.Getpid(), syscall.SIGURG); err != nil {
		t.Fatal(err)
	}
	kill := exec.Command("/bin/kill", "-USR1", strconv.Itoa(os.Getpid()))
	if err := kill.Run(); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s.Name != "SIGUSR1" || s.SenderPID != int32(kill.Process.Pid) || s.SenderComm != "kill" || s.SenderUID != 0 || s.TargetPID != int32(os.Getpid()) {
			t.Errorf("got %+v, want SIGUSR1 from pid %d (kill, uid 0)", s, kill.Process.Pid)
		}
		if d := time.Since(s.At); d < 0 || d > 5*time.Second {
			t.Errorf("signal dated %v, %v from now", s.At, d)
		}
		t.Log(s.Describe())
	case <-time.After(3 * time.Second):
		t.Fatal("no signal record within 3 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestKillLeavesEvidenceForNextStart: a watched process is SIGKILLed (it can record
// nothing); the next Start finds who did it in the pinned ring, and after Forget the
// one after that does not report it again.
func TestKillLeavesEvidenceForNextStart(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	first, err := Start(victim.Process.Pid, dir)
	if err != nil {
		t.Fatal(err)
	}
	kill := exec.Command("/bin/kill", "-KILL", strconv.Itoa(victim.Process.Pid))
	if err := kill.Run(); err != nil {
		t.Fatal(err)
	}
	victim.Wait()
	first.Close() // the killed agent's program goes with it; the pinned ring stays

	next, err := Start(os.Getpid(), dir)
	if err != nil {
		t.Fatal(err)
	}
	prev := next.Previous()
	if len(prev) != 1 || prev[0].Name != "SIGKILL" || prev[0].TargetPID != int32(victim.Process.Pid) || prev[0].SenderPID != int32(kill.Process.Pid) || !prev[0].Fatal() {
		t.Fatalf("Previous() = %+v, want one SIGKILL of pid %d by pid %d", prev, victim.Process.Pid, kill.Process.Pid)
	}
	if err := next.Forget(prev[0]); err != nil {
		t.Fatal(err)
	}
	next.Close()
	again, err := Start(os.Getpid(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if p := again.Previous(); len(p) != 0 {
		t.Errorf("after Forget, Previous() = %+v", p)
	}
	t.Log(prev[0].Describe())
}
