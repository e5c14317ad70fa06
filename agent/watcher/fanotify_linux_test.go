//go:build linux

package watcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

const waitFor = 5 * time.Second

// fanotifyDir makes a temporary directory that user nobody can traverse and returns
// it with symlinks evaluated (events carry real paths).
func fanotifyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// startFanotify starts a fanotify watcher with permission events, or skips (fails in
// CI) when the kernel or the privileges do not allow it.
func startFanotify(t *testing.T, rules []FileRule, opts Options) (FileWatcher, *sink) {
	t.Helper()
	requireRoot(t)
	opts.ForceMode = ModeFanotify
	if opts.CoalesceWindow == 0 {
		// Generous, so that "exactly one event" does not hinge on a loaded machine
		// scheduling a process between its open and its read; the window itself is
		// covered by TestCoalescer.
		opts.CoalesceWindow = 2 * time.Second
	}
	w, err := NewFileWatcher(rules, opts)
	if err == nil && w.Degraded() != "" {
		w.Close()
		err = fmt.Errorf("degraded: %s", w.Degraded())
	}
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("fanotify with permission events unavailable (skipped outside CI only): %v", err)
		}
		t.Fatalf("fanotify with permission events unavailable: %v", err)
	}
	return w, run(t, w)
}

// runAs runs a command, as user nobody if nobody is set, and returns its pid.
func runAs(t *testing.T, nobody bool, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	if nobody {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return cmd.Process.Pid
}

// sentinel reads path from a fresh process and collects events until that read is
// reported. Events come in the order the kernel reported the accesses, so everything
// caused before the sentinel has been sent by then.
func sentinel(t *testing.T, s *sink, path string) []chain.Event {
	t.Helper()
	pid := runAs(t, false, "cat", path)
	got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.PID == int32(pid) && ev.Path == path })
	return got[:len(got)-1]
}

func TestFanotifyReadByNobody(t *testing.T) {
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "credentials")
	stop := filepath.Join(dir, "sentinel")
	writeFile(t, decoy, []byte("aws_secret_access_key = x\n"))
	writeFile(t, stop, []byte("s\n"))
	w, s := startFanotify(t, []FileRule{
		{Name: "aws-creds", Severity: chain.SeverityCritical, Paths: []string{decoy}},
		{Name: "sentinel", Severity: chain.SeverityInfo, Paths: []string{stop}},
	}, Options{})
	if w.Mode() != ModeFanotify {
		t.Fatalf("Mode = %q", w.Mode())
	}

	pid := runAs(t, true, "cat", decoy)
	got := sentinel(t, s, stop)
	if len(got) != 1 {
		t.Fatalf("got %d events for one cat, want 1: %+v", len(got), got)
	}
	ev := got[0]
	want := chain.Event{
		Type: chain.TypeFile, Rule: "aws-creds", Severity: chain.SeverityCritical, Source: ModeFanotify,
		Path: decoy, Op: OpRead, Count: 1, PID: int32(pid), PPID: int32(os.Getpid()),
		User: "nobody", Exe: "/usr/bin/cat", Cmdline: "cat " + decoy,
	}
	if ev.UID == nil || *ev.UID != 65534 {
		t.Errorf("UID = %v, want 65534", ev.UID)
	}
	ev.UID = nil
	if ev.Count < 1 {
		t.Errorf("Count = %d, want at least 1", ev.Count)
	}
	want.Count = ev.Count // how many notifications the kernel merged is its business
	if fmt.Sprintf("%+v", ev) != fmt.Sprintf("%+v", want) {
		t.Errorf("event\n got %+v\nwant %+v", ev, want)
	}
}

func TestFanotifyWrite(t *testing.T) {
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "decoy.log")
	stop := filepath.Join(dir, "sentinel")
	writeFile(t, decoy, nil)
	writeFile(t, stop, []byte("s\n"))
	_, s := startFanotify(t, []FileRule{{Name: "decoy", Severity: chain.SeverityWarn, Paths: []string{decoy, stop}}}, Options{})

	script := "echo x >> " + decoy
	pid := runAs(t, false, "sh", "-c", script)
	got := sentinel(t, s, stop)
	if len(got) != 1 {
		t.Fatalf("got %d events for one append, want 1: %+v", len(got), got)
	}
	ev := got[0]
	if ev.Op != OpWrite || ev.PID != int32(pid) || ev.Path != decoy || ev.Cmdline != "sh -c "+script || ev.User != "root" || ev.Count != 1 {
		t.Errorf("event %+v; want a write by pid %d, sh -c %q, root", ev, pid, script)
	}
}

func TestFanotifyDirectoryAndNeighbours(t *testing.T) {
	dir := fanotifyDir(t)
	watchedDir := filepath.Join(dir, "decoys")
	if err := os.Mkdir(watchedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(watchedDir, "id_rsa")
	watched := filepath.Join(dir, "watched")
	neighbour := filepath.Join(dir, "neighbour")
	for _, p := range []string{child, watched, neighbour} {
		writeFile(t, p, []byte(p+"\n"))
	}
	_, s := startFanotify(t, []FileRule{
		{Name: "decoy-dir", Severity: chain.SeverityCritical, Paths: []string{watchedDir}},
		{Name: "file", Severity: chain.SeverityWarn, Paths: []string{watched}},
	}, Options{})

	pid := runAs(t, true, "cat", child)
	runAs(t, false, "cat", neighbour)
	// The agent's own reads are not reported.
	for _, p := range []string{watched, child} {
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	got := sentinel(t, s, watched)
	if len(got) != 1 || got[0].Path != child || got[0].Rule != "decoy-dir" || got[0].PID != int32(pid) || got[0].Op != OpRead {
		t.Fatalf("events before the sentinel: %+v; want one read of %s by pid %d under decoy-dir", got, child, pid)
	}
}

func TestFanotifyReadLoopIsOneEvent(t *testing.T) {
	dir := fanotifyDir(t)
	big := filepath.Join(dir, "big")
	stop := filepath.Join(dir, "sentinel")
	writeFile(t, big, make([]byte, 64<<10))
	writeFile(t, stop, []byte("s\n"))
	_, s := startFanotify(t, []FileRule{{Name: "big", Severity: chain.SeverityInfo, Paths: []string{big, stop}}}, Options{})

	cmd := exec.Command(os.Args[0], big)
	cmd.Env = append(os.Environ(), helperEnv+"=readloop")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("read loop: %v: %s", err, out)
	}
	got := sentinel(t, s, stop)
	if len(got) != 1 {
		t.Fatalf("got %d events for one read loop, want 1: %+v", len(got), got)
	}
	if ev := got[0]; ev.PID != int32(cmd.Process.Pid) || ev.Op != OpRead || ev.Count <= 1 {
		t.Fatalf("event %+v; want one read by pid %d with Count > 1", ev, cmd.Process.Pid)
	}
}

// TestFanotifyWatchingPasswd watches the real /etc/passwd, which the watcher itself
// reads to name users: that read must be answered, not deadlock.
func TestFanotifyWatchingPasswd(t *testing.T) {
	_, s := startFanotify(t, []FileRule{{Name: "passwd", Severity: chain.SeverityWarn, Paths: []string{"/etc/passwd"}}}, Options{})
	pid := runAs(t, true, "cat", "/etc/passwd")
	ev := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.PID == int32(pid) })
	last := ev[len(ev)-1]
	if last.User != "nobody" || last.Op != OpRead || last.Rule != "passwd" {
		t.Fatalf("event %+v; want a read of /etc/passwd by nobody", last)
	}
}

func TestFanotifyLossIsReported(t *testing.T) {
	requireRoot(t)
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "decoy")
	writeFile(t, decoy, []byte("x\n"))
	losses := make(chan Loss, 16)
	w, err := NewFileWatcher([]FileRule{{Name: "decoy", Severity: chain.SeverityInfo, Paths: []string{decoy}}},
		Options{ForceMode: ModeFanotify, Buffer: 1, OnLoss: func(l Loss) {
			select {
			case losses <- l:
			default:
			}
		}})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("fanotify unavailable (skipped outside CI only): %v", err)
		}
		t.Fatal(err)
	}
	// Watching starts in NewFileWatcher: with Run not started and room for one kernel
	// event, these opens are allowed at once and their events overflow the buffer.
	for range 3 {
		runAs(t, false, "cat", decoy)
	}
	run(t, w)
	select {
	case l := <-losses:
		if l.Reason != LossBufferFull || l.Source != ModeFanotify || l.Count == 0 || l.AtLeast {
			t.Errorf("loss %+v; want an exact buffer_full count", l)
		}
		if w.Lost() < l.Count {
			t.Errorf("Lost() = %d < reported %d", w.Lost(), l.Count)
		}
	case <-time.After(waitFor):
		t.Fatalf("no loss reported within %v (Lost() = %d)", waitFor, w.Lost())
	}
}

func TestFanotifyCloseWithoutRun(t *testing.T) {
	requireRoot(t)
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "decoy")
	writeFile(t, decoy, []byte("x\n"))
	w, err := NewFileWatcher([]FileRule{{Name: "d", Paths: []string{decoy}}}, Options{ForceMode: ModeFanotify})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("fanotify unavailable (skipped outside CI only): %v", err)
		}
		t.Fatal(err)
	}
	runAs(t, false, "cat", decoy) // answered although Run never starts
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	runAs(t, false, "cat", decoy) // and not blocked once closed
	if err := w.Run(context.Background(), make(chan chain.Event)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

// TestFanotifyHeldOpenIsTimely covers processes that keep the file open: the first read
// must be reported within a second, not at close, and an open with no read at all
// (a mapping, or a descriptor kept for later) is reported as an open.
func TestFanotifyHeldOpenIsTimely(t *testing.T) {
	dir := fanotifyDir(t)
	readFile := filepath.Join(dir, "read")
	openFile := filepath.Join(dir, "open")
	writeFile(t, readFile, []byte("line\n"))
	writeFile(t, openFile, []byte("line\n"))
	_, s := startFanotify(t, []FileRule{{Name: "held", Severity: chain.SeverityWarn, Paths: []string{readFile, openFile}}},
		Options{CoalesceWindow: DefaultCoalesceWindow})

	hold := func(script string) (*exec.Cmd, time.Time) {
		cmd := exec.Command("sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, time.Now()
	}
	for _, tc := range []struct {
		script, path, op string
	}{
		{"exec 3<" + readFile + "; read -r x <&3; exec sleep 30", readFile, OpRead},
		{"exec 3<" + openFile + "; exec sleep 30", openFile, OpOpen},
	} {
		cmd, started := hold(tc.script)
		got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.PID == int32(cmd.Process.Pid) })
		ev := got[len(got)-1]
		if latency := time.Since(started); latency > time.Second {
			t.Errorf("%s reported after %v, want within 1s", tc.op, latency)
		}
		if ev.Op != tc.op || ev.Path != tc.path {
			t.Errorf("event %+v; want %s of %s", ev, tc.op, tc.path)
		}
	}
}

// TestFanotifyReplacedFileIsRewatched replaces the watched file through a rename, as
// vipw and useradd do with /etc/passwd: the new file must be watched within Rescan.
func TestFanotifyReplacedFileIsRewatched(t *testing.T) {
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "passwd")
	writeFile(t, decoy, []byte("old\n"))
	_, s := startFanotify(t, []FileRule{{Name: "passwd", Severity: chain.SeverityWarn, Paths: []string{decoy}}},
		Options{Rescan: 50 * time.Millisecond})
	tmp := decoy + ".new"
	writeFile(t, tmp, []byte("new\n"))
	if err := os.Rename(tmp, decoy); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		pid := runAs(t, false, "cat", decoy)
		poll := time.NewTimer(200 * time.Millisecond)
	drain:
		for {
			select {
			case ev := <-s.Out:
				if ev.PID == int32(pid) && ev.Path == decoy && ev.Op == OpRead {
					poll.Stop()
					return
				}
			case <-poll.C:
				break drain
			}
		}
	}
	t.Fatalf("a read of the replaced %s was not reported within %v", decoy, waitFor)
}

func TestAutoModePicksFanotifyAsRoot(t *testing.T) {
	w, err := NewFileWatcher([]FileRule{{Name: "r", Paths: []string{t.TempDir()}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	switch {
	case os.Geteuid() == 0 && w.Mode() != ModeFanotify:
		t.Errorf("as root, auto mode is %q (%s), want fanotify", w.Mode(), w.Degraded())
	case os.Geteuid() != 0 && (w.Mode() != ModeFsnotify || !strings.Contains(w.Degraded(), "fanotify unavailable")):
		t.Errorf("unprivileged, auto mode is %q (%s), want fsnotify saying why", w.Mode(), w.Degraded())
	}
}
