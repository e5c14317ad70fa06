package procwatch

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// TestProcModeOnWindows runs a real program and expects the Toolhelp poll to report it
// with its parent and full image path, and to name what Windows polling cannot read.
func TestProcModeOnWindows(t *testing.T) {
	rules := []Rule{{Name: "ping", Severity: chain.SeverityWarn, Names: []string{"PING.EXE", "ping.exe"}}}
	for _, mode := range []string{ModeEBPF, ModeNetlink} {
		if _, err := New(rules, Options{ForceMode: mode}); !errors.Is(err, ErrNotSupported) {
			t.Errorf("New(%s) = %v, want ErrNotSupported", mode, err)
		}
	}
	w, err := New(rules, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Mode() != ModeProc || !strings.Contains(w.Degraded(), "command line") {
		t.Errorf("Mode %q, Degraded %q", w.Mode(), w.Degraded())
	}
	s := run(t, w)
	ping := filepath.Join(os.Getenv("SystemRoot"), "System32", "PING.EXE")
	cmd := exec.Command(ping, "-n", "3", "127.0.0.1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	got := s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.PID == int32(cmd.Process.Pid) })
	ev := got[len(got)-1]
	if ev.Source != ModeProc || ev.Rule != "ping" || !strings.EqualFold(ev.Exe, ping) || ev.PPID != int32(os.Getpid()) || ev.UID != nil ||
		!slices.Equal(ev.Missing, []string{fieldUID, fieldGID, fieldCmdline, fieldCwd, fieldCgroup, fieldUser}) {
		t.Errorf("event %+v", ev)
	}
}
