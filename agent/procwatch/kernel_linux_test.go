//go:build linux

package procwatch

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/internal/watchtest"

	"github.com/tripwire-project/tripwire/proto/chain"
)

const waitFor = 10 * time.Second

// asNobody is the prefix that runs a command as user nobody, as an attacker's shell
// would (setpriv execs the command in place: same pid).
var asNobody = []string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"}

// requireRoot skips a kernel test for an unprivileged developer, and fails it in CI.
func requireRoot(t *testing.T) { watchtest.RequireRoot(t, "CAP_BPF, CAP_NET_ADMIN, CAP_SYS_PTRACE") }

// requireProgram skips (fails in CI) when a program the test runs is not installed.
func requireProgram(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("needs %s (install %s); set CI to make this a failure", name, pkg)
	}
	t.Fatalf("needs %s (install %s), and CI is set", name, pkg)
}

// start forces a mode and runs the watcher until the test ends. A mode the kernel or
// the privileges refuse skips the test outside CI and fails it in CI.
func start(t *testing.T, mode string, rules []Rule) (Watcher, *sink) {
	t.Helper()
	requireRoot(t)
	requireProgram(t, "nc", "netcat-openbsd")
	requireProgram(t, "setpriv", "util-linux")
	w, err := New(rules, Options{ForceMode: mode, PollInterval: 20 * time.Millisecond})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s mode unavailable (skipped outside CI only): %v", mode, err)
		}
		t.Fatalf("%s mode unavailable: %v", mode, err)
	}
	if w.Mode() != mode {
		t.Fatalf("Mode = %q, want %q", w.Mode(), mode)
	}
	return w, run(t, w)
}

// marker is a word no other process on the machine has in its command line.
func marker(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	return "tw" + hex.EncodeToString(b)
}

// sentinelRule matches the command line sentinel runs.
func sentinelRule(mark string) Rule {
	return Rule{Name: "sentinel", Severity: chain.SeverityInfo, Cmdline: []string{"sh -c sleep 0.3; : " + mark}}
}

// sentinel runs a process that sentinelRule matches and collects events until it is
// reported. It lives long enough for every mode (proc polls every 20 ms), and is run
// after the processes under test have exited, so their events come first in ebpf and
// netlink modes, and in or before the same poll in proc mode.
func sentinel(t *testing.T, s *sink, mark string) []chain.Event {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 0.3; :", mark)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sentinel: %v: %s", err, out)
	}
	got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.Rule == "sentinel" && ev.PID == int32(cmd.Process.Pid) })
	return got[:len(got)-1]
}

// listenAsNobody starts `nc -lU` on a fresh socket path as user nobody: a watched
// program with arguments that lives until the test ends, long enough for every mode.
func listenAsNobody(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "s")
	cmd := exec.Command(asNobody[0], append(asNobody[1:], "nc", "-lU", sock)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nc as nobody: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, "nc -lU " + sock
}

func TestWatchedProgramAsNobody(t *testing.T) {
	for _, mode := range []string{ModeEBPF, ModeNetlink, ModeProc} {
		t.Run(mode, func(t *testing.T) {
			mark := marker(t)
			_, s := start(t, mode, []Rule{
				{Name: "netcat", Severity: chain.SeverityCritical, Names: []string{"nc"}},
				sentinelRule(mark),
			})
			if out, err := exec.Command(asNobody[0], append(asNobody[1:], "sleep", "0.1")...).CombinedOutput(); err != nil {
				t.Fatalf("sleep as nobody: %v: %s", err, out)
			}
			cmd, cmdline := listenAsNobody(t)
			got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.Rule == "netcat" })
			ev := got[len(got)-1]
			if ev.Type != chain.TypeProcess || ev.Severity != chain.SeverityCritical || ev.Source != mode || ev.Count != 1 {
				t.Errorf("event %+v: want a CRITICAL PROCESS event from %s with count 1", ev, mode)
			}
			if ev.PID != int32(cmd.Process.Pid) || ev.PPID != int32(os.Getpid()) {
				t.Errorf("pid %d ppid %d, want %d %d", ev.PID, ev.PPID, cmd.Process.Pid, os.Getpid())
			}
			if ev.User != "nobody" || ev.UID == nil || *ev.UID != 65534 || ev.GID == nil || *ev.GID != 65534 {
				t.Errorf("user %q uid %v gid %v, want nobody 65534 65534", ev.User, ev.UID, ev.GID)
			}
			if ev.Cmdline != cmdline || ev.CmdlineTruncated {
				t.Errorf("cmdline %q (truncated %v), want %q", ev.Cmdline, ev.CmdlineTruncated, cmdline)
			}
			wantExe, _ := filepath.EvalSymlinks("/usr/bin/nc")
			if ev.Exe != wantExe || ev.Comm != "nc" || ev.Cwd == "" || ev.Cgroup == "" {
				t.Errorf("exe %q comm %q cwd %q cgroup %q, want %s, nc and a cwd and cgroup", ev.Exe, ev.Comm, ev.Cwd, ev.Cgroup, wantExe)
			}
			if self, _ := os.Executable(); ev.ParentExe != self {
				t.Errorf("parent exe %q, want %q", ev.ParentExe, self)
			}
			if len(ev.Missing) != 0 || ev.ExeSHA256 != "" {
				t.Errorf("missing %v sha256 %q, want nothing missing and no hash (no content rule)", ev.Missing, ev.ExeSHA256)
			}
			// Nothing else matched: not the unwatched sleep, not the setpriv before nc.
			rest := sentinel(t, s, mark)
			if others := slices.DeleteFunc(append(got[:len(got)-1], rest...), func(ev chain.Event) bool { return ev.PID == int32(cmd.Process.Pid) && ev.Rule == "netcat" }); len(others) != 0 {
				t.Errorf("unexpected events: %+v", others)
			}
		})
	}
}

func TestEBPFShortLivedWithFullCmdline(t *testing.T) {
	mark := marker(t)
	w, s := start(t, ModeEBPF, []Rule{
		{Name: "netcat", Severity: chain.SeverityCritical, Names: []string{"nc"}},
		sentinelRule(mark),
	})
	long := strings.Repeat("x", 5000)
	short := exec.Command(asNobody[0], append(asNobody[1:], "nc", "-z", "127.0.0.1", "1")...)
	_ = short.Run() // nothing listens on port 1: nc exits at once, with status 1
	tooLong := exec.Command("nc", "-z", "127.0.0.1", "1", long)
	_ = tooLong.Run()
	got := sentinel(t, s, mark)
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2 (short-lived nc, long argv): %+v", len(got), got)
	}
	ev := got[0]
	wantExe, _ := filepath.EvalSymlinks("/usr/bin/nc")
	if ev.PID != int32(short.Process.Pid) || ev.PPID != int32(os.Getpid()) || ev.User != "nobody" ||
		ev.Cmdline != "nc -z 127.0.0.1 1" || ev.CmdlineTruncated || ev.Exe != wantExe || ev.Comm != "nc" {
		t.Errorf("short-lived nc: %+v", ev)
	}
	ev = got[1]
	if ev.PID != int32(tooLong.Process.Pid) || !ev.CmdlineTruncated || len(ev.Cmdline) != 4096 || !strings.HasPrefix(ev.Cmdline, "nc -z 127.0.0.1 1 xxx") || ev.User != "root" {
		t.Errorf("long argv: pid %d (want %d) truncated %v, %d bytes of cmdline %.40q", ev.PID, tooLong.Process.Pid, ev.CmdlineTruncated, len(ev.Cmdline), ev.Cmdline)
	}
	if w.Lost() != 0 {
		t.Errorf("Lost = %d, want 0", w.Lost())
	}
}

// copyNC copies the nc binary under another name into a directory nobody can use.
func copyNC(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile("/usr/bin/nc")
	if err != nil {
		t.Fatal(err)
	}
	x := filepath.Join(dir, "x")
	if err := os.WriteFile(x, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return x
}

func TestRenamedCopyMatchesByContent(t *testing.T) {
	for _, mode := range []string{ModeEBPF, ModeNetlink} {
		t.Run(mode, func(t *testing.T) {
			mark := marker(t)
			x := copyNC(t)
			_, s := start(t, mode, []Rule{
				{Name: "netcat-content", Severity: chain.SeverityCritical, Names: []string{"nc"}, MatchContent: true},
				{Name: "netcat-name", Severity: chain.SeverityWarn, Names: []string{"nc"}},
				sentinelRule(mark),
			})
			// Long-lived, so that netlink mode finds it in /proc.
			cmd := exec.Command(x, "-lU", filepath.Join(t.TempDir(), "s"))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			got := s.Until(t, waitFor, func(ev chain.Event) bool { return ev.PID == int32(cmd.Process.Pid) })
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			ev := got[len(got)-1]
			want, err := hashPath("/usr/bin/nc")
			if err != nil {
				t.Fatal(err)
			}
			if ev.Rule != "netcat-content" || ev.Exe != x || ev.ExeSHA256 != want {
				t.Errorf("event %+v: want netcat-content for %s with hash %s", ev, x, want)
			}
			// Nothing else: not the name-only rule, for this or any other process.
			rest := sentinel(t, s, mark)
			for _, ev := range append(got[:len(got)-1], rest...) {
				if ev.PID == int32(cmd.Process.Pid) || ev.Rule == "netcat-name" {
					t.Errorf("unexpected event %+v", ev)
				}
			}
			for _, ev := range rest {
				if ev.ExeSHA256 == "" && !slices.Contains(ev.Missing, "exe_sha256") {
					t.Errorf("event %+v neither has a hash nor says it is missing", ev)
				}
			}
		})
	}
}

func TestEBPFRenamedShortLivedCopy(t *testing.T) {
	mark := marker(t)
	x := copyNC(t)
	_, s := start(t, ModeEBPF, []Rule{
		{Name: "netcat-content", Severity: chain.SeverityCritical, Names: []string{"nc"}, MatchContent: true},
		sentinelRule(mark),
	})
	cmd := exec.Command(asNobody[0], append(asNobody[1:], x, "-z", "127.0.0.1", "1")...)
	_ = cmd.Run()
	got := sentinel(t, s, mark)
	if len(got) != 1 || got[0].PID != int32(cmd.Process.Pid) || got[0].Cmdline != x+" -z 127.0.0.1 1" || got[0].User != "nobody" {
		t.Fatalf("events %+v: want one for pid %d running %s", got, cmd.Process.Pid, x)
	}
}

func TestCmdlineRules(t *testing.T) {
	for _, mode := range []string{ModeEBPF, ModeNetlink, ModeProc} {
		t.Run(mode, func(t *testing.T) {
			mark := marker(t)
			_, s := start(t, mode, []Rule{
				{Name: "glob", Severity: chain.SeverityWarn, Cmdline: []string{"sh -c sleep 0.2; : " + mark + " */etc/shadow*"}},
				{Name: "regex", Severity: chain.SeverityWarn, CmdlineRegex: []*regexp.Regexp{regexp.MustCompile(`^sh -c sleep 0\.2; : ` + mark + ` .*--evil( |$)`)}},
				{Name: "no-match", Severity: chain.SeverityWarn, Cmdline: []string{"*" + mark + " nothing"}},
				sentinelRule(mark),
			})
			both := exec.Command("sh", "-c", "sleep 0.2; :", mark, "/tmp/x /etc/shadow --evil")
			globOnly := exec.Command("sh", "-c", "sleep 0.2; :", mark, "cat /etc/shadow")
			neither := exec.Command("sh", "-c", "sleep 0.2; :", mark, "--evil-not")
			for _, c := range []*exec.Cmd{both, globOnly, neither} {
				if out, err := c.CombinedOutput(); err != nil {
					t.Fatalf("%v: %v: %s", c.Args, err, out)
				}
			}
			got := sentinel(t, s, mark)
			var hits []string
			for _, ev := range got {
				hits = append(hits, fmt.Sprintf("%s:%d", ev.Rule, ev.PID))
			}
			slices.Sort(hits)
			want := []string{
				fmt.Sprintf("glob:%d", both.Process.Pid), fmt.Sprintf("glob:%d", globOnly.Process.Pid),
				fmt.Sprintf("regex:%d", both.Process.Pid),
			}
			slices.Sort(want)
			if !slices.Equal(hits, want) {
				t.Errorf("rule:pid hits %v, want %v", hits, want)
			}
		})
	}
}

func TestAutoModePrefersEBPF(t *testing.T) {
	requireRoot(t)
	w, err := New([]Rule{{Name: "netcat", Names: []string{"nc"}}}, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer w.Close()
	if w.Mode() != ModeEBPF || w.Degraded() != "" {
		t.Errorf("auto mode %q, degraded %q; want ebpf, not degraded (BTF and root are here)", w.Mode(), w.Degraded())
	}
}

func TestForcedModeErrors(t *testing.T) {
	rules := []Rule{{Name: "netcat", Names: []string{"nc"}}}
	if _, err := New(rules, Options{ForceMode: "kprobe"}); err == nil || !strings.Contains(err.Error(), `"kprobe" is not one of`) {
		t.Errorf("New with mode kprobe: %v", err)
	}
	if _, err := New(nil, Options{ForceMode: ModeProc}); err == nil || !strings.Contains(err.Error(), "no process rules") {
		t.Errorf("New without rules: %v", err)
	}
}

func TestEBPFRingBufferOverflowIsCounted(t *testing.T) {
	requireRoot(t)
	// A one-page ring holds at most ~45 records (each at least 88 bytes: the ring's
	// header, ours, "/bin/true" twice); nobody reads it while 300 execs happen.
	src, err := openEBPF(&enricher{hashes: newHashCache()}, uint32(os.Getpagesize()))
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("ebpf mode unavailable (skipped outside CI only): %v", err)
		}
		t.Fatalf("ebpf mode unavailable: %v", err)
	}
	defer src.close()
	if out, err := exec.Command("sh", "-c", "for i in $(seq 300); do /bin/true; done").CombinedOutput(); err != nil {
		t.Fatalf("exec loop: %v: %s", err, out)
	}
	// Other processes on the machine may exec too: that only adds losses.
	if n, atLeast := src.kernelLost(); n < 300-45 || atLeast {
		t.Errorf("kernelLost = %d (at least %v), want %d or more, exact", n, atLeast, 300-45)
	}
}
