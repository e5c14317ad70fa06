//go:build linux

package procwatch

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/agent/proc"
)

// procSource polls /proc for processes that are new, or that exec'd since the last
// poll (same pid, other executable, task name or start time).
type procSource struct {
	en       *enricher
	interval time.Duration
	seen     map[int32]procState // owned by read after openProc
	retries  map[int32]int       // polls that caught a pid inside execve, by pid
	stop     chan struct{}
	done     chan struct{}
}

// maxRetries bounds how many polls in a row a process caught inside execve (see
// unsettled) is looked at again before it is reported as it is.
const maxRetries = 3

// procState is what tells one process image from another under one pid.
type procState struct {
	start uint64 // start time, clock ticks after boot
	comm  string
	exe   string
}

func openProc(en *enricher, interval time.Duration) (source, error) {
	s := &procSource{en: en, interval: interval, retries: map[int32]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	seen, err := listProcs()
	if err != nil {
		return nil, err
	}
	s.seen = seen
	return s, nil
}

func (s *procSource) mode() string { return ModeProc }

func (s *procSource) limits() string {
	return fmt.Sprintf("proc: /proc is polled every %v, so a program that runs for less than that is not seen at all, and one that does is reported up to that late", s.interval)
}

func (s *procSource) read(push func(*execRecord)) error {
	defer close(s.done)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return nil
		case <-tick.C:
		}
		now, err := listProcs()
		if err != nil {
			return err
		}
		for pid, st := range now {
			if old, ok := s.seen[pid]; ok && old == st {
				continue
			}
			r := &execRecord{pid: pid}
			s.en.fromProc(r)
			if s.unsettled(r, pid, st) {
				r.release()
				delete(now, pid) // look again at the next poll
				continue
			}
			if _, known := s.seen[pid]; !known && forkOf(r, now) {
				r.release()
				continue // a copy of its parent, not an exec
			}
			push(r)
		}
		s.seen = now
	}
}

// unsettled says a snapshot of pid caught it inside execve: with neither executable
// nor command line in place yet (kernel threads and zombies never have them), or
// with another executable or task name than the listing just saw. Such a process is
// looked at again at the next poll, at most maxRetries times in a row.
func (s *procSource) unsettled(r *execRecord, pid int32, listed procState) bool {
	midExec := r.lacks(fieldExe) && r.lacks(fieldCmdline)
	changed := r.exe != listed.exe || r.comm != listed.comm
	if !midExec && !changed || s.retries[pid] >= maxRetries {
		delete(s.retries, pid)
		return false
	}
	s.retries[pid]++
	return true
}

// forkOf says a new process is a forked copy of its parent that has not exec'd:
// same executable, task name and command line.
func forkOf(r *execRecord, now map[int32]procState) bool {
	if r.lacks(fieldPPID) || r.lacks(fieldCmdline) {
		return false
	}
	parent, ok := now[r.ppid]
	if !ok || parent.exe != r.exe || parent.comm != r.comm {
		return false
	}
	info, err := proc.Lookup(r.ppid)
	return err == nil && info.Cmdline == r.cmdline && info.Truncated == r.cmdlineTruncated
}

// listProcs reads the state of every process in /proc. Processes that vanish while
// it runs are left out.
func listProcs() (map[int32]procState, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	out := make(map[int32]procState, len(names))
	buf := make([]byte, 1024) // a stat line is a few hundred bytes
	link := make([]byte, unix.PathMax)
	for _, name := range names {
		pid, err := strconv.ParseInt(name, 10, 32)
		if err != nil {
			continue
		}
		dir := procDir(int32(pid))
		n, err := readSmall(dir+"stat", buf)
		if err != nil {
			continue
		}
		st, ok := parseStat(buf[:n])
		if !ok {
			continue
		}
		if n, err := unix.Readlink(dir+"exe", link); err == nil {
			st.exe = string(link[:n])
		} // else "" for kernel threads and zombies
		out[int32(pid)] = st
	}
	return out, nil
}

// readSmall reads a small /proc file into buf with one read, without the stat and
// allocation of os.ReadFile: polling does this for every process.
func readSmall(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.Read(fd, buf)
}

// parseStat takes the task name and start time from /proc/<pid>/stat. The name is
// in parentheses and may itself contain ") ", so the last one ends it.
func parseStat(b []byte) (procState, bool) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndex(b, []byte(") "))
	if open < 0 || end < open {
		return procState{}, false
	}
	f := bytes.Fields(b[end+2:])
	// Field 22 (starttime) of proc(5); f[0] is field 3 (state).
	if len(f) < 20 {
		return procState{}, false
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procState{}, false
	}
	return procState{start: start, comm: string(b[open+1 : end])}, true
}

func (s *procSource) kernelLost() (uint64, bool) { return 0, false }

func (s *procSource) close() error {
	close(s.stop)
	<-s.done
	return nil
}
