package procwatch

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// TestProcModeOnMacOS runs a real program and expects the sysctl poll to report it
// with its exec path and argv (kern.procargs2) and its ids (kern.proc.all).
func TestProcModeOnMacOS(t *testing.T) {
	rules := []Rule{{Name: "sleeper", Severity: chain.SeverityWarn, Names: []string{"sleep"}}}
	for _, mode := range []string{ModeEBPF, ModeNetlink} {
		if _, err := New(rules, Options{ForceMode: mode}); !errors.Is(err, ErrNotSupported) {
			t.Errorf("New(%s) = %v, want ErrNotSupported", mode, err)
		}
	}
	w, err := New(rules, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Mode() != ModeProc || !strings.Contains(w.Degraded(), "kern.procargs2") {
		t.Errorf("Mode %q, Degraded %q", w.Mode(), w.Degraded())
	}
	s := run(t, w)
	cmd := exec.Command("/bin/sleep", "1.5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	got := s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.PID == int32(cmd.Process.Pid) })
	ev := got[len(got)-1]
	if ev.Source != ModeProc || ev.Rule != "sleeper" || ev.Exe != "/bin/sleep" || ev.Cmdline != "/bin/sleep 1.5" || ev.Comm != "sleep" ||
		ev.PPID != int32(os.Getpid()) || ev.UID == nil || *ev.UID != int64(os.Getuid()) || ev.GID == nil ||
		!slices.Equal(ev.Missing, []string{fieldCwd, fieldCgroup}) {
		t.Errorf("event %+v", ev)
	}
}
