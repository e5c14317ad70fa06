//go:build linux

package watcher

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// tracker finds expected events among those a watcher sends, in any order: the two
// fanotify groups are read by different goroutines.
type tracker struct {
	s       *sink
	backlog []chain.Event
}

// expect returns the first event by pid (any pid if 0) with op and path (any path if
// ""), waiting up to waitFor for it; events that do not match are kept for later calls.
func (tr *tracker) expect(t *testing.T, pid int, op, path string) chain.Event {
	t.Helper()
	match := func(ev chain.Event) bool {
		return (pid == 0 || ev.PID == int32(pid)) && ev.Op == op && (path == "" || ev.Path == path)
	}
	if i := slices.IndexFunc(tr.backlog, match); i >= 0 {
		ev := tr.backlog[i]
		tr.backlog = slices.Delete(tr.backlog, i, i+1)
		return ev
	}
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		select {
		case ev := <-tr.s.Out:
			if match(ev) {
				return ev
			}
			tr.backlog = append(tr.backlog, ev)
		case <-deadline.C:
			t.Fatalf("no %s of %s by pid %d within %v; got %+v", op, path, pid, waitFor, tr.backlog)
			return chain.Event{}
		}
	}
}

// helperBinary copies the test binary where user nobody can execute it (the go build
// cache is private to root).
func helperBinary(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "helper.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runHelperProc runs a helper of runHelper in a child process, as nobody if asked, and
// returns its pid; refused says the kernel refused the helper's feature.
func runHelperProc(t *testing.T, bin string, nobody bool, mode string, args ...string) (pid int, refused bool) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	if nobody {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == exitRefused {
		return cmd.Process.Pid, true
	}
	if err != nil {
		t.Fatalf("helper %s %v: %v: %s", mode, args, err, out)
	}
	return cmd.Process.Pid, false
}

func TestFanotifyExec(t *testing.T) {
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "backup-tool")
	stop := filepath.Join(dir, "sentinel")
	b, err := os.ReadFile("/usr/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(decoy, b, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, stop, []byte("s\n"))
	_, s := startFanotify(t, []FileRule{{Name: "decoy-bin", Severity: chain.SeverityCritical, Paths: []string{decoy, stop}}}, Options{})

	cmd := exec.Command(decoy)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", decoy, err, out)
	}
	got := sentinel(t, s, stop)
	if len(got) != 1 {
		t.Fatalf("got %d events for one exec, want 1: %+v", len(got), got)
	}
	ev := got[0]
	// The exec is seen before it happens: the process is still the image that called
	// execve, here this test binary's child.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Op != OpExec || ev.PID != int32(cmd.Process.Pid) || ev.Path != decoy || ev.User != "nobody" || ev.Exe != self || ev.Count != 1 {
		t.Fatalf("event %+v; want an exec of %s by pid %d (nobody, exe %s)", ev, decoy, cmd.Process.Pid, self)
	}
}

// TestFanotifyTree covers a watched directory as a tree: entry changes in it and in a
// subdirectory created after the watcher started, and reads there.
func TestFanotifyTree(t *testing.T) {
	dir := fanotifyDir(t)
	root := filepath.Join(dir, "decoys")
	old := filepath.Join(root, "old")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	_, s := startFanotify(t, []FileRule{{Name: "tree", Severity: chain.SeverityWarn, Paths: []string{root}}}, Options{})
	tr := &tracker{s: s}
	expect := tr.expect

	sub := filepath.Join(root, "new")
	f, g := filepath.Join(sub, "f"), filepath.Join(sub, "g")
	cmd := func(name string, args ...string) int { return runAs(t, false, name, args...) }

	expect(t, cmd("mkdir", sub), OpCreate, sub)
	pid := cmd("sh", "-c", "echo x > "+f)
	expect(t, pid, OpCreate, f)
	expect(t, pid, OpWrite, f)
	ev := expect(t, cmd("chmod", "600", f), OpChmod, f)
	// Entry events are notifications: a process that has exited by the time the event
	// is read keeps its pid but may lose exe and cmdline, which must then be named.
	if ev.Cmdline != "chmod 600 "+f && !slices.Contains(ev.Missing, "cmdline") {
		t.Errorf("chmod event %+v; want its command line, or cmdline named missing", ev)
	}
	expect(t, cmd("mv", f, g), OpRename, f+RenameArrow+g)
	expect(t, cmd("cat", g), OpRead, g)
	expect(t, cmd("rm", g), OpRemove, g)
	expect(t, cmd("rmdir", sub), OpRemove, sub)

	x := filepath.Join(old, "x")
	expect(t, cmd("touch", x), OpCreate, x)
	expect(t, cmd("chmod", "700", old), OpChmod, old)
	outside := filepath.Join(dir, "outside")
	expect(t, cmd("mv", x, outside), OpRename, x+RenameArrow+outside)

	// The agent's own changes are not reported: made before a child's, they would
	// be read before it.
	own := filepath.Join(old, "own")
	if err := os.WriteFile(own, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(own, 0o600); err != nil {
		t.Fatal(err)
	}
	y := filepath.Join(old, "y")
	expect(t, cmd("touch", y), OpCreate, y)
	for _, ev := range tr.backlog {
		if ev.Path == own || ev.PID == int32(os.Getpid()) {
			t.Errorf("event for the agent's own change: %+v", ev)
		}
	}
}

// TestFanotifyTreeFilledBeforeMarked creates a subdirectory and its content faster than
// the watcher can mark it: the content is reported all the same, and what happens in it
// afterwards is seen.
func TestFanotifyTreeFilledBeforeMarked(t *testing.T) {
	dir := fanotifyDir(t)
	root := filepath.Join(dir, "decoys")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	_, s := startFanotify(t, []FileRule{{Name: "tree", Severity: chain.SeverityWarn, Paths: []string{root}}}, Options{})
	expect := (&tracker{s: s}).expect
	a, b := filepath.Join(root, "a"), filepath.Join(root, "a", "b")
	f := filepath.Join(b, "f")
	runAs(t, false, "sh", "-c", "mkdir -p "+b+" && echo x > "+f)
	for _, p := range []string{a, b, f} {
		// Seen by the kernel (with the actor) or found when a was marked (without).
		if ev := expect(t, 0, OpCreate, p); ev.PID == 0 && !slices.Contains(ev.Missing, "pid") {
			t.Errorf("create of %s: %+v; want a pid, or pid named missing", p, ev)
		}
	}
	pid := runAs(t, false, "rm", f)
	expect(t, pid, OpRemove, f)
}

// TestFanotifyBurst loops open/read/close 10,000 times in one process: a few events,
// the first at once, whose counts add up to every read.
func TestFanotifyBurst(t *testing.T) {
	const loops = 10000
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "credentials")
	writeFile(t, decoy, []byte("secret\n"))
	const window = time.Second
	w, s := startFanotify(t, []FileRule{{Name: "creds", Severity: chain.SeverityCritical, Paths: []string{decoy}}}, Options{BurstWindow: window})

	cmd := exec.Command(os.Args[0], fmt.Sprint(loops), decoy)
	cmd.Env = append(os.Environ(), helperEnv+"=openloop")
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	first := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.PID == pid })
	if latency := time.Since(started); latency > time.Second {
		t.Errorf("first event after %v, want within 1s", latency)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("open loop: %v", err)
	}
	elapsed := time.Since(started)
	events := first[len(first)-1:]
	sum := events[0].Count
	deadline := time.NewTimer(2*window + waitFor)
	defer deadline.Stop()
	for sum < loops {
		select {
		case ev := <-s.Out:
			if ev.PID == pid {
				events = append(events, ev)
				sum += ev.Count
			}
		case <-deadline.C:
			t.Fatalf("counts add up to %d over %d events (lost %d), want %d", sum, len(events), w.Lost(), loops)
		}
	}
	for _, ev := range events {
		if ev.Op != OpRead || ev.Path != decoy || ev.Rule != "creds" {
			t.Errorf("event %+v; want reads of %s", ev, decoy)
		}
	}
	if sum != loops || w.Lost() != 0 {
		t.Fatalf("counts add up to %d over %d events (lost %d), want %d", sum, len(events), w.Lost(), loops)
	}
	// One at once, then at most one summary per window while the loop ran, and one
	// after it.
	if limit := 2 + int(elapsed/window); len(events) > limit {
		t.Fatalf("%d events for %d reads in %v, want at most %d", len(events), loops, elapsed, limit)
	}
	t.Logf("%d reads in %v: %d events", loops, elapsed, len(events))
}

// TestFanotifyEntryLossIsReported fills the hand-off queue from the name-reporting
// group: its losses are counted like the permission group's.
func TestFanotifyEntryLossIsReported(t *testing.T) {
	requireRoot(t)
	dir := fanotifyDir(t)
	root := filepath.Join(dir, "decoys")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	losses := make(chan Loss, 16)
	w, err := NewFileWatcher([]FileRule{{Name: "tree", Severity: chain.SeverityInfo, Paths: []string{root}}},
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
	// mkdir opens nothing: these are entry events only, three for room for one.
	runAs(t, false, "mkdir", filepath.Join(root, "x"), filepath.Join(root, "y"), filepath.Join(root, "z"))
	deadline := time.Now().Add(waitFor)
	for w.(*fanWatcher).dropped.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	run(t, w)
	select {
	case l := <-losses:
		if l.Reason != LossBufferFull || l.Count < 2 || w.Lost() < l.Count {
			t.Errorf("loss %+v, Lost() = %d; want at least 2 buffer_full", l, w.Lost())
		}
	case <-time.After(waitFor):
		t.Fatalf("no loss reported within %v (Lost() = %d)", waitFor, w.Lost())
	}
}

// TestFanotifyReplacementIsWatchedAtOnce replaces a watched file through a rename with
// rescans far apart: the rename itself must make the new file watched.
func TestFanotifyReplacementIsWatchedAtOnce(t *testing.T) {
	dir := fanotifyDir(t)
	decoy := filepath.Join(dir, "passwd")
	tmp := filepath.Join(dir, "passwd.new")
	writeFile(t, decoy, []byte("old\n"))
	_, s := startFanotify(t, []FileRule{{Name: "passwd", Severity: chain.SeverityWarn, Paths: []string{decoy}}},
		Options{Rescan: time.Hour})
	expect := (&tracker{s: s}).expect
	writeFile(t, tmp, []byte("new\n"))
	expect(t, runAs(t, false, "mv", tmp, decoy), OpRename, tmp+RenameArrow+decoy)
	expect(t, runAs(t, true, "cat", decoy), OpRead, decoy)
}
