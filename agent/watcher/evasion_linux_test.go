//go:build linux

package watcher

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// TestFanotifyEvasions performs, in a child process, each way of reading a watched
// file other than read(2) through its configured path, and asserts what the watcher
// reports. docs/evasions.md is the table of these cases: keep them in step.
func TestFanotifyEvasions(t *testing.T) {
	type want struct{ op, path string }
	tests := []struct {
		name   string
		helper string
		nobody bool // run as nobody (the file is world-readable); else root
		// extra is the second path a helper takes (a link, a new name), if any,
		// relative to the directory of the watched file.
		extra string
		want  func(file, extra string) []want
	}{
		{
			name: "hard link then read through it", helper: "link-read", extra: "innocent",
			want: func(file, link string) []want { return []want{{OpCreate, link}, {OpRead, link}} },
		},
		{
			// The link count of the watched file changes: a chmod, named by whichever
			// of its names the kernel picks.
			name: "hard link in an unwatched directory then read through it", helper: "link-read", extra: "../elsewhere",
			want: func(file, link string) []want { return []want{{OpChmod, ""}, {OpRead, link}} },
		},
		{
			name: "rename then read", helper: "rename-read", extra: "renamed",
			want: func(file, renamed string) []want {
				return []want{{OpRename, file + RenameArrow + renamed}, {OpRead, renamed}}
			},
		},
		{
			name: "rename then read once the path is rescanned", helper: "rename-later-read", extra: "renamed",
			want: func(file, renamed string) []want {
				return []want{{OpRename, file + RenameArrow + renamed}, {OpRead, renamed}}
			},
		},
		{
			name: "read through a symlink", helper: "symlink-read", extra: "shortcut",
			want: func(file, _ string) []want { return []want{{OpRead, file}} },
		},
		{
			name: "mmap", helper: "mmap", nobody: true,
			want: func(file, _ string) []want { return []want{{OpOpen, file}} },
		},
		{
			name: "sendfile", helper: "sendfile", nobody: true,
			want: func(file, _ string) []want { return []want{{OpRead, file}} },
		},
		{
			name: "copy_file_range", helper: "copyrange", nobody: true,
			want: func(file, _ string) []want { return []want{{OpRead, file}} },
		},
		{
			name: "io_uring read", helper: "iouring", nobody: true,
			want: func(file, _ string) []want { return []want{{OpRead, file}} },
		},
	}
	dir := fanotifyDir(t)
	bin := helperBinary(t, dir)
	// Each case has its own watched file, in a directory of its own, under a rule
	// named after the case's index.
	caseDir := func(i int) string { return filepath.Join(dir, fmt.Sprint("case", i)) }
	var rules []FileRule
	for i := range tests {
		if err := os.Mkdir(caseDir(i), 0o755); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(caseDir(i), "secret")
		writeFile(t, file, []byte("token = x\n"))
		rules = append(rules, FileRule{Name: fmt.Sprint("case", i), Severity: chain.SeverityCritical, Paths: []string{file}})
	}
	_, s := startFanotify(t, rules, Options{Rescan: 100 * time.Millisecond})
	tr := &tracker{s: s}

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(caseDir(i), "secret")
			args := []string{file}
			extra := ""
			if tt.extra != "" {
				extra = filepath.Join(caseDir(i), tt.extra)
				args = append(args, extra)
			}
			pid, refused := runHelperProc(t, bin, tt.nobody, tt.helper, args...)
			if refused {
				t.Skipf("the kernel refused %s (see the helper's message); not an evasion this kernel allows", tt.helper)
			}
			for _, w := range tt.want(file, extra) {
				ev := tr.expect(t, pid, w.op, w.path)
				if rule := fmt.Sprint("case", i); ev.Rule != rule {
					t.Errorf("%s of %s named rule %q, want %q", w.op, ev.Path, ev.Rule, rule)
				}
			}
		})
	}
}

// evasionFile makes a watched file in a directory of its own and starts a watcher on it.
func evasionFile(t *testing.T, content []byte, mode os.FileMode) (dir, file string, tr *tracker) {
	t.Helper()
	dir = fanotifyDir(t)
	sub := filepath.Join(dir, "lower")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(sub, "secret")
	if err := os.WriteFile(file, content, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, mode); err != nil {
		t.Fatal(err)
	}
	_, s := startFanotify(t, []FileRule{{Name: "secret", Severity: chain.SeverityCritical, Paths: []string{file}}}, Options{})
	return dir, file, &tracker{s: s}
}

// TestFanotifyEvasionLoader runs a watched program through the dynamic loader, which
// maps it instead of executing it: no exec, but the loader's read names the rule.
func TestFanotifyEvasionLoader(t *testing.T) {
	const loader = "/lib64/ld-linux-x86-64.so.2"
	if _, err := os.Stat(loader); err != nil {
		t.Skipf("no %s on this architecture: %v", loader, err)
	}
	prog, err := os.ReadFile("/usr/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	_, file, tr := evasionFile(t, prog, 0o755)
	pid := runAs(t, true, loader, file)
	if ev := tr.expect(t, pid, OpRead, file); ev.Rule != "secret" || ev.User != "nobody" {
		t.Fatalf("event %+v; want a read by nobody under rule secret", ev)
	}
}

// TestFanotifyEvasionOverlay reads a watched file through an overlayfs mount whose
// lower layer holds it, as a container would: the inode mark catches it, but the path
// the kernel gives is the one on the overlay's private mount of the lower layer.
func TestFanotifyEvasionOverlay(t *testing.T) {
	dir, file, tr := evasionFile(t, []byte("token = x\n"), 0o644)
	var opts string
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts = "lowerdir=" + filepath.Dir(file) + ",upperdir=" + filepath.Join(dir, "upper") + ",workdir=" + filepath.Join(dir, "work")
	merged := filepath.Join(dir, "merged")
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, merged).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("cannot mount overlayfs (skipped outside CI only; needs the overlay module): %v: %s", err, out)
		}
		t.Fatalf("cannot mount overlayfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", merged).Run() })
	pid := runAs(t, true, "cat", filepath.Join(merged, "secret"))
	ev := tr.expect(t, pid, OpRead, "")
	if ev.Rule != "secret" || ev.Path != "/secret" {
		t.Fatalf("event %+v; want a read under rule secret, with the path on the lower layer's mount", ev)
	}
}

// TestFanotifyEvasionBindMount reads a watched file through a bind mount made in a
// private mount namespace: caught. The path is the one the reader used while its
// namespace lives, and relative to the mount ("/secret") once it is gone.
func TestFanotifyEvasionBindMount(t *testing.T) {
	dir, file, tr := evasionFile(t, []byte("token = x\n"), 0o644)
	bind := filepath.Join(dir, "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	runAs(t, false, "unshare", "-m", "sh", "-c", "mount --bind "+filepath.Dir(file)+" "+bind+" && cat "+filepath.Join(bind, "secret"))
	ev := tr.expect(t, 0, OpRead, "")
	if ev.Rule != "secret" || ev.Exe != "/usr/bin/cat" || (ev.Path != filepath.Join(bind, "secret") && ev.Path != "/secret") {
		t.Fatalf("event %+v; want a read by cat under rule secret", ev)
	}
}

// TestFanotifyEvasionEarlyDescriptor reads a watched file through a descriptor opened
// before the watcher started, as an implant that opened it long ago would: marks are
// on the inode, so the read is caught (with no open to hold, the reader is looked up
// when the event is read).
func TestFanotifyEvasionEarlyDescriptor(t *testing.T) {
	requireRoot(t)
	dir := fanotifyDir(t)
	file := filepath.Join(dir, "secret")
	writeFile(t, file, []byte("token = x\n"))
	cmd := exec.Command("sh", "-c", "exec 3<"+file+"; read -r go; exec cat <&3 >/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	fd3 := fmt.Sprintf("/proc/%d/fd/3", cmd.Process.Pid)
	for deadline := time.Now().Add(waitFor); ; time.Sleep(5 * time.Millisecond) {
		if p, _ := os.Readlink(fd3); p == file {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sh did not open %s within %v", file, waitFor)
		}
	}
	_, s := startFanotify(t, []FileRule{{Name: "secret", Severity: chain.SeverityCritical, Paths: []string{file}}}, Options{})
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	ev := (&tracker{s: s}).expect(t, cmd.Process.Pid, OpRead, file)
	if ev.Rule != "secret" {
		t.Fatalf("event %+v; want a read under rule secret", ev)
	}
}
