//go:build linux

package proc

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLookupSelf(t *testing.T) {
	info, err := Lookup(int32(os.Getpid()))
	if err != nil {
		t.Fatalf("Lookup(self): %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.EvalSymlinks(exe); info.Exe != want && info.Exe != exe {
		t.Errorf("Exe = %q, want %q", info.Exe, exe)
	}
	if info.PPID != int32(os.Getppid()) || info.UID != int64(os.Getuid()) || info.EUID != int64(os.Geteuid()) {
		t.Errorf("got %+v, want ppid %d uid %d euid %d", info, os.Getppid(), os.Getuid(), os.Geteuid())
	}
	if want := strings.Join(os.Args, " "); info.Cmdline != want && !info.Truncated {
		t.Errorf("Cmdline = %q, want %q", info.Cmdline, want)
	}
	if len(info.Missing) != 0 {
		t.Errorf("Missing = %v, want none", info.Missing)
	}
}

func TestLookupChildAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("needs root to start a process as nobody (set CI to make this a failure)")
		}
		t.Fatal("needs root to start a process as nobody")
	}
	long := strings.Repeat("x", MaxCmdline)
	// sh stays alive running sleep, and takes the long argument as its $0 (sleep itself
	// would reject it and exit at once).
	cmd := exec.Command("sh", "-c", "sleep 60; :", long)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start sleep: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Start returns once the child's close-on-exec pipe closes, which is inside execve,
	// before the new image's arguments are in place: wait for them, with a deadline.
	var info Info
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		var err error
		info, err = Lookup(int32(cmd.Process.Pid))
		if err == nil && info.Cmdline != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lookup(child) = %+v, %v", info, err)
		}
	}
	if info.UID != 65534 || info.PPID != int32(os.Getpid()) {
		t.Errorf("got uid %d ppid %d, want 65534 %d", info.UID, info.PPID, os.Getpid())
	}
	if want, _ := filepath.EvalSymlinks(cmd.Path); info.Exe != want {
		t.Errorf("Exe = %q, want %q", info.Exe, want)
	}
	if want := "sh -c sleep 60; : xxx"; !info.Truncated || len(info.Cmdline) != MaxCmdline || !strings.HasPrefix(info.Cmdline, want) {
		t.Errorf("Cmdline of %d bytes (truncated %v), want %d bytes starting %q", len(info.Cmdline), info.Truncated, MaxCmdline, want)
	}
	if got := NewUsers(0).Name(info.UID); got != "nobody" {
		t.Errorf("user of uid 65534 = %q, want nobody", got)
	}
}

func TestLookupGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("cannot run true: %v", err)
	}
	info, err := Lookup(int32(cmd.Process.Pid))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Lookup(exited) error = %v, want fs.ErrNotExist", err)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.File != "status" {
		t.Fatalf("error %v is not a *Error naming status", err)
	}
	for _, f := range []string{FieldPPID, FieldUID, FieldExe, FieldCmdline} {
		if !slices.Contains(info.Missing, f) {
			t.Errorf("Missing = %v lacks %q", info.Missing, f)
		}
	}
}
