package procwatch

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// scriptedTable is a process table whose listings a test sets: it drives the diff
// that macOS and Windows polling share, which cannot run against their kernels here.
type scriptedTable struct {
	mu      sync.Mutex
	procs   map[int32]listedProc
	details map[int32]procDetail
}

func (t *scriptedTable) set(procs map[int32]listedProc, details map[int32]procDetail) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.procs, t.details = procs, details
}

func (t *scriptedTable) list() (map[int32]listedProc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.procs), nil
}

func (t *scriptedTable) describe(pid int32) procDetail {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.details[pid]
}

func (t *scriptedTable) limits() string { return "scripted" }

var (
	launchd   = listedProc{ppid: 0, start: 1, comm: "launchd", ids: true}
	shell     = listedProc{ppid: 1, start: 100, comm: "zsh", uid: 501, gid: 20, ids: true}
	launchdD  = procDetail{filename: "/sbin/launchd", exe: "/sbin/launchd", cmdline: "/sbin/launchd", haveCmdline: true}
	shellD    = procDetail{filename: "/bin/zsh", exe: "/bin/zsh", cmdline: "-zsh", haveCmdline: true}
	netcat    = listedProc{ppid: 50, start: 200, comm: "nc", uid: 501, gid: 20, ids: true}
	netcatD   = procDetail{filename: "/usr/bin/nc", exe: "/usr/bin/nc", cmdline: "nc -l 4444", haveCmdline: true}
	macOSBase = map[int32]listedProc{1: launchd, 50: shell}
)

// polled runs one poll of s and returns the records it pushed, released.
func polled(t *testing.T, s *tableSource) []execRecord {
	t.Helper()
	var got []execRecord
	if err := s.poll(func(r *execRecord) {
		got = append(got, *r)
		r.release()
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestTablePoll(t *testing.T) {
	table := &scriptedTable{}
	table.set(macOSBase, map[int32]procDetail{1: launchdD, 50: shellD})
	s, err := openTable(&enricher{hashes: newHashCache()}, table, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := polled(t, s); len(got) != 0 {
		t.Fatalf("nothing changed, got %+v", got)
	}
	pids := func(rs []execRecord) []int32 {
		var out []int32
		for _, r := range rs {
			out = append(out, r.pid)
		}
		return out
	}

	t.Run("new process", func(t *testing.T) {
		now := maps.Clone(macOSBase)
		now[60] = netcat
		table.set(now, map[int32]procDetail{1: launchdD, 50: shellD, 60: netcatD})
		got := polled(t, s)
		want := execRecord{
			pid: 60, ppid: 50, uid: 501, gid: 20, comm: "nc", filename: "/usr/bin/nc", exe: "/usr/bin/nc",
			cmdline: "nc -l 4444", parentExe: "/bin/zsh", missing: []string{fieldCwd, fieldCgroup},
		}
		if real, err := filepath.EvalSymlinks("/usr/bin/nc"); err == nil {
			want.filenameReal = real
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
		if got := polled(t, s); len(got) != 0 {
			t.Errorf("the same listing again reported %+v", got)
		}
	})

	t.Run("pid reused", func(t *testing.T) {
		now := maps.Clone(macOSBase)
		reused := netcat
		reused.start = 300
		now[60] = reused
		table.set(now, map[int32]procDetail{1: launchdD, 50: shellD, 60: netcatD})
		if got := polled(t, s); !slices.Equal(pids(got), []int32{60}) {
			t.Errorf("got %+v, want pid 60 again", got)
		}
	})

	t.Run("fork then exec", func(t *testing.T) {
		now := maps.Clone(macOSBase)
		child := shell
		child.ppid, child.start = 50, 400
		now[70] = child
		table.set(now, map[int32]procDetail{1: launchdD, 50: shellD, 70: shellD})
		if got := polled(t, s); len(got) != 0 {
			t.Fatalf("a fork that has not exec'd was reported: %+v", got)
		}
		child.comm = "curl"
		now[70] = child
		table.set(now, map[int32]procDetail{1: launchdD, 50: shellD,
			70: {filename: "/usr/bin/curl", exe: "/usr/bin/curl", cmdline: "curl -s x", haveCmdline: true}})
		got := polled(t, s)
		if len(got) != 1 || got[0].pid != 70 || got[0].comm != "curl" || got[0].cmdline != "curl -s x" {
			t.Errorf("exec after fork: got %+v", got)
		}
	})

	t.Run("exited processes and unreadable details", func(t *testing.T) {
		now := map[int32]listedProc{1: launchd, 80: {ppid: 79, start: 500, comm: "nc"}}
		table.set(now, map[int32]procDetail{1: launchdD})
		got := polled(t, s)
		want := []string{fieldUID, fieldGID, fieldExe, fieldCmdline, fieldCwd, fieldCgroup, fieldParentExe}
		if len(got) != 1 || got[0].pid != 80 || !reflect.DeepEqual(got[0].missing, want) {
			t.Errorf("got %+v, want pid 80 missing %v", got, want)
		}
	})
}

func TestExecsSince(t *testing.T) {
	prev := map[int32]listedProc{1: launchd, 50: shell, 60: netcat}
	renamed, restarted := shell, netcat
	renamed.comm = "bash"
	restarted.start++
	now := map[int32]listedProc{1: launchd, 50: renamed, 60: restarted, 90: netcat}
	if got := execsSince(prev, now); !slices.Equal(got, []int32{50, 60, 90}) {
		t.Errorf("execsSince = %v, want [50 60 90]", got)
	}
	if got := execsSince(now, now); got != nil {
		t.Errorf("execsSince of a listing and itself = %v", got)
	}
}

func TestTablePollHashesByPath(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := hashPath(exe)
	if err != nil {
		t.Fatal(err)
	}
	table := &scriptedTable{}
	table.set(map[int32]listedProc{1: launchd}, nil)
	en := &enricher{hashing: true, hashes: newHashCache()}
	s, err := openTable(en, table, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	table.set(map[int32]listedProc{1: launchd, 2: {ppid: 1, start: 2, comm: "tool"}}, map[int32]procDetail{2: {exe: exe}})
	var held *execRecord
	if err := s.poll(func(r *execRecord) { held = r }); err != nil {
		t.Fatal(err)
	}
	if held == nil || held.exeFile == nil {
		t.Fatalf("record %+v does not hold its executable for hashing", held)
	}
	got, err := en.hashes.hash(held.exeFile, held.exeKey)
	held.release()
	if err != nil || got != sum {
		t.Fatalf("hash = %q, %v; want %q", got, err, sum)
	}
	// The cache knows the content now: the next exec of it is not held open.
	table.set(map[int32]listedProc{1: launchd, 3: {ppid: 1, start: 3, comm: "tool"}}, map[int32]procDetail{3: {exe: exe}})
	if err := s.poll(func(r *execRecord) { held = r }); err != nil {
		t.Fatal(err)
	}
	if held.pid != 3 || held.exeFile != nil || held.sha256 != sum {
		t.Errorf("second exec: %+v, want the cached hash", held)
	}
}

// TestTablePollThroughEngine runs a polled table under the engine, as macOS and
// Windows do: matching, user names and Degraded.
func TestTablePollThroughEngine(t *testing.T) {
	table := &scriptedTable{}
	table.set(macOSBase, map[int32]procDetail{1: launchdD, 50: shellD})
	m, err := newMatcher([]Rule{{Name: "netcat", Severity: chain.SeverityCritical, Names: []string{"nc"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	en := &enricher{hashes: newHashCache()}
	src, err := openTable(en, table, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	w := newEngine(src, m, en, Options{ExcludePID: -1}.withDefaults(), "")
	s := run(t, w)
	if want := "proc: the process table is polled every 10ms, so a program that runs for less than that is not seen at all, and one that does is reported up to that late; scripted"; w.Degraded() != want || w.Mode() != ModeProc {
		t.Errorf("Mode %q, Degraded %q", w.Mode(), w.Degraded())
	}
	root := netcat
	root.uid, root.gid = 0, 0
	now := maps.Clone(macOSBase)
	now[60] = root
	table.set(now, map[int32]procDetail{1: launchdD, 50: shellD, 60: netcatD})
	ev := s.Until(t, 5*time.Second, func(chain.Event) bool { return true })[0]
	if ev.Rule != "netcat" || ev.Source != ModeProc || ev.PID != 60 || ev.PPID != 50 || ev.User != "root" || ev.UID == nil || *ev.UID != 0 ||
		ev.Exe != "/usr/bin/nc" || ev.Cmdline != "nc -l 4444" || ev.ParentExe != "/bin/zsh" || !slices.Equal(ev.Missing, []string{fieldCwd, fieldCgroup}) {
		t.Errorf("event %+v", ev)
	}
}

// TestTablePollWithoutIDsOrCmdline is Windows's case: no user ids and no command line
// in the listing, so those are missing and the fork check (which needs the command
// line) never hides a process.
func TestTablePollWithoutIDsOrCmdline(t *testing.T) {
	system := listedProc{ppid: 0, start: 10, comm: "System"}
	table := &scriptedTable{}
	table.set(map[int32]listedProc{4: system}, nil)
	s, err := openTable(&enricher{hashes: newHashCache()}, table, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cmd := listedProc{ppid: 4, start: 20, comm: "System"}
	table.set(map[int32]listedProc{4: system, 8: cmd}, map[int32]procDetail{8: {exe: `C:\Windows\System32\cmd.exe`}})
	got := polled(t, s)
	want := []string{fieldUID, fieldGID, fieldCmdline, fieldCwd, fieldCgroup, fieldParentExe}
	if len(got) != 1 || got[0].exe != `C:\Windows\System32\cmd.exe` || !reflect.DeepEqual(got[0].missing, want) {
		t.Errorf("got %+v, want cmd.exe missing %v", got, want)
	}
}
