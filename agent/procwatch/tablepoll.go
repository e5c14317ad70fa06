package procwatch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// procTable is a platform's process table, as polling reads it where there is no
// /proc (macOS, Windows). Its methods are called from the reader goroutine only.
type procTable interface {
	// list returns every process running now, by pid.
	list() (map[int32]listedProc, error)
	// describe returns what the platform tells of one process beyond the listing.
	describe(pid int32) procDetail
	// limits is what the platform's listing cannot tell, for Degraded.
	limits() string
}

// listedProc is one process as a listing shows it.
type listedProc struct {
	ppid int32
	// start is the creation time in the platform's unit (0 if unknown): with comm,
	// it tells a new process image from the one a pid had at the last poll.
	start int64
	comm  string
	// uid and gid are known only if ids is set.
	uid, gid int64
	ids      bool
}

// sameImage says p is still the process image old was: same start time and task
// name (macOS keeps the start time across exec but renames the task).
func (p listedProc) sameImage(old listedProc) bool {
	return p.start == old.start && p.comm == old.comm
}

// procDetail is what a platform tells of a process beyond its listing.
type procDetail struct {
	// filename is the path execve was given, "" if unknown.
	filename string
	// exe is the absolute path of the executable, "" if unknown.
	exe string
	// cmdline is argv joined by single spaces, known only if haveCmdline is set.
	cmdline     string
	truncated   bool
	haveCmdline bool
}

// tableSource is proc mode off Linux: it polls a procTable and reports the processes
// that are new, or whose image changed, since the last poll.
type tableSource struct {
	en       *enricher
	table    procTable
	interval time.Duration
	seen     map[int32]listedProc // owned by read after openTable
	stop     chan struct{}
	done     chan struct{}
}

// openTable takes a first listing, whose processes are not reported.
func openTable(en *enricher, table procTable, interval time.Duration) (*tableSource, error) {
	seen, err := table.list()
	if err != nil {
		return nil, err
	}
	return &tableSource{en: en, table: table, interval: interval, seen: seen, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

func (s *tableSource) mode() string { return ModeProc }

func (s *tableSource) limits() string {
	return fmt.Sprintf("proc: the process table is polled every %v, so a program that runs for less than that is not seen at all, and one that does is reported up to that late; %s", s.interval, s.table.limits())
}

func (s *tableSource) read(push func(*execRecord)) error {
	defer close(s.done)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return nil
		case <-tick.C:
		}
		if err := s.poll(push); err != nil {
			return err
		}
	}
}

// poll lists the processes once and pushes a record for each new process image.
func (s *tableSource) poll(push func(*execRecord)) error {
	now, err := s.table.list()
	if err != nil {
		return err
	}
	for _, pid := range execsSince(s.seen, now) {
		if r := s.record(pid, now); r != nil {
			push(r)
		}
	}
	s.seen = now
	return nil
}

// execsSince returns, in order, the pids of now that prev did not have or had with
// another process image: the processes that started or exec'd in between.
func execsSince(prev, now map[int32]listedProc) []int32 {
	var pids []int32
	for pid, p := range now {
		if old, ok := prev[pid]; !ok || !p.sameImage(old) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// record describes the new image of pid, or returns nil if it is a forked copy of its
// parent that has not exec'd (same task name, executable and command line): that copy
// is remembered, and its exec reported when it renames the task.
func (s *tableSource) record(pid int32, now map[int32]listedProc) *execRecord {
	p := now[pid]
	d := s.table.describe(pid)
	parent, haveParent := now[p.ppid]
	pd := s.table.describe(p.ppid)
	_, known := s.seen[pid]
	if !known && haveParent && parent.comm == p.comm && d.haveCmdline && pd.haveCmdline &&
		d.exe == pd.exe && d.cmdline == pd.cmdline && d.truncated == pd.truncated {
		return nil
	}
	r := &execRecord{
		pid: pid, ppid: p.ppid, uid: p.uid, gid: p.gid, comm: p.comm,
		filename: d.filename, exe: d.exe, parentExe: pd.exe,
		cmdline: d.cmdline, cmdlineTruncated: d.truncated,
	}
	if !p.ids {
		r.missing = append(r.missing, fieldUID, fieldGID)
	}
	for _, f := range []struct {
		name    string
		unknown bool
	}{
		{fieldComm, p.comm == ""},
		{fieldExe, d.exe == ""},
		{fieldCmdline, !d.haveCmdline},
		{fieldCwd, true},
		{fieldCgroup, true},
		{fieldParentExe, pd.exe == ""},
	} {
		if f.unknown {
			r.missing = append(r.missing, f.name)
		}
	}
	if filepath.IsAbs(r.filename) {
		if real, err := filepath.EvalSymlinks(r.filename); err == nil {
			r.filenameReal = real
		}
	}
	exe := r.filenameReal
	if exe == "" {
		exe = r.exe
	}
	s.en.holdExePath(r, exe)
	return r
}

// holdExePath opens the executable at path for Run to hash, unless hashing is off or
// the cache knows its content. Where there is no /proc the file is found by its path,
// so an executable replaced since the process started is the replacement.
func (en *enricher) holdExePath(r *execRecord, path string) {
	if !en.hashing || path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	k, err := keyOfFile(f)
	if err != nil {
		f.Close()
		return
	}
	if sum, ok := en.hashes.get(k); ok {
		r.sha256 = sum
		f.Close()
		return
	}
	r.exeFile, r.exeKey = f, k
}

func (s *tableSource) kernelLost() (uint64, bool) { return 0, false }

func (s *tableSource) close() error {
	close(s.stop)
	<-s.done
	return nil
}
