package watcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func TestFsnotifyForcedWrite(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	watched := filepath.Join(dir, "decoy.txt")
	other := filepath.Join(dir, "other.txt")
	for _, p := range []string{watched, other} {
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, s := start(t, []FileRule{{Name: "decoy", Severity: chain.SeverityWarn, Paths: []string{watched}}}, Options{ForceMode: ModeFsnotify})
	if w.Mode() != ModeFsnotify || !strings.Contains(w.Degraded(), "reads") {
		t.Fatalf("Mode %q Degraded %q; want fsnotify saying reads are not seen", w.Mode(), w.Degraded())
	}

	appendTo := func(p string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("y\n"); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(other)
	appendTo(watched)
	got := s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.Op == OpWrite })
	for _, ev := range got {
		if ev.Path != watched {
			t.Errorf("event for unwatched %s: %+v", ev.Path, ev)
		}
	}
	ev := got[len(got)-1]
	if ev.Type != chain.TypeFile || ev.Rule != "decoy" || ev.Severity != chain.SeverityWarn || ev.Source != ModeFsnotify || ev.Count != 1 {
		t.Errorf("event %+v", ev)
	}
	if ev.PID != 0 || !slices.Contains(ev.Missing, "pid") || !slices.Contains(ev.Missing, "user") {
		t.Errorf("event %+v should name pid and user as missing", ev)
	}
}

func TestFsnotifyReplacedAndCreated(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	watched := filepath.Join(dir, "passwd")
	if err := os.WriteFile(watched, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := filepath.Join(dir, "not-yet")
	_, s := start(t, []FileRule{{Name: "r", Severity: chain.SeverityInfo, Paths: []string{watched, later}}}, Options{ForceMode: ModeFsnotify})

	// Replace through a rename, as vipw and useradd do: the watch must survive.
	tmp := filepath.Join(dir, "passwd.tmp")
	if err := os.WriteFile(tmp, []byte("b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, watched); err != nil {
		t.Fatal(err)
	}
	s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.Path == watched && ev.Op == OpCreate })
	if err := os.WriteFile(watched, []byte("c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.Path == watched && ev.Op == OpWrite })
	if err := os.WriteFile(later, []byte("d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.Path == later && ev.Op == OpCreate })
	if err := os.Remove(later); err != nil {
		t.Fatal(err)
	}
	s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.Path == later && ev.Op == OpRemove })
}

func TestRunTwiceAndClose(t *testing.T) {
	w, err := NewFileWatcher([]FileRule{{Name: "r", Paths: []string{t.TempDir()}}}, Options{ForceMode: ModeFsnotify})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.Run(context.Background(), make(chan chain.Event)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

// TestFsnotifyTree watches a directory as a tree: a subdirectory there at the start is
// watched at once, one created later from the next rescan.
func TestFsnotifyTree(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(root, "old")
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	w, s := start(t, []FileRule{{Name: "tree", Severity: chain.SeverityInfo, Paths: []string{root}}},
		Options{ForceMode: ModeFsnotify, Rescan: 20 * time.Millisecond})
	f := filepath.Join(old, "f")
	if err := os.WriteFile(f, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.Path == f && ev.Op == OpCreate })

	sub := filepath.Join(root, "new")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(w.(*fsnWatcher).w.WatchList(), sub) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not watched within 5s", sub)
		}
		time.Sleep(10 * time.Millisecond)
	}
	g := filepath.Join(sub, "g")
	if err := os.WriteFile(g, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Until(t, 5*time.Second, func(ev chain.Event) bool { return ev.Path == g && ev.Op == OpCreate })
}
