package netwatch

import (
	"os"
	"slices"
	"strconv"

	"github.com/tripwire-project/tripwire/agent/proc"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// maxFDCache bounds the socket inode → descriptor cache; past it the cache starts
// afresh.
const maxFDCache = 1024

// owner is what is known of the process owning a connection's local socket.
type owner struct {
	pid     int32 // 0: unknown
	uid     int64
	haveUID bool
	comm    string // the kernel's task name, when the kernel gave it
}

// fdRef is where a socket inode was last found open.
type fdRef struct {
	pid int32
	fd  string
}

// owners finds the process holding a socket and reads its identity. It is used from
// one goroutine only.
type owners struct {
	users *proc.Users
	fds   map[uint32]fdRef
}

func newOwners() *owners {
	return &owners{users: proc.NewUsers(0), fds: map[uint32]fdRef{}}
}

// bySocket returns the owner of socket inode (uid from sock_diag), looking the inode
// up among every process's descriptors. A socket held by several processes (inherited
// across fork) is attributed to the first found.
func (o *owners) bySocket(inode, uid uint32) owner {
	ow := owner{uid: int64(uid), haveUID: true}
	if inode == 0 {
		return ow
	}
	target := "socket:[" + strconv.FormatUint(uint64(inode), 10) + "]"
	if r, ok := o.fds[inode]; ok {
		if l, err := os.Readlink(fdPath(r.pid, r.fd)); err == nil && l == target {
			ow.pid = r.pid
			return ow
		}
		delete(o.fds, inode)
	}
	if r, ok := findFD(target); ok {
		if len(o.fds) >= maxFDCache {
			clear(o.fds)
		}
		o.fds[inode] = r
		ow.pid = r.pid
	}
	return ow
}

func fdPath(pid int32, fd string) string {
	return "/proc/" + strconv.FormatInt(int64(pid), 10) + "/fd/" + fd
}

// findFD scans /proc/*/fd for a descriptor whose link is target.
func findFD(target string) (fdRef, bool) {
	procs, err := readNames("/proc")
	if err != nil {
		return fdRef{}, false
	}
	for _, p := range procs {
		pid, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			continue
		}
		fds, err := readNames("/proc/" + p + "/fd")
		if err != nil {
			continue // exited, or a kernel thread
		}
		for _, fd := range fds {
			if l, err := os.Readlink(fdPath(int32(pid), fd)); err == nil && l == target {
				return fdRef{pid: int32(pid), fd: fd}, true
			}
		}
	}
	return fdRef{}, false
}

// readNames lists a directory without sorting or stat'ing its entries.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// fill sets the process fields of ev from ow and /proc, and names in ev.Missing those
// that could not be known.
func (o *owners) fill(ev *chain.Event, ow owner) {
	ev.Comm = ow.comm
	var missing []string
	uid, haveUID := ow.uid, ow.haveUID
	if ow.pid == 0 {
		missing = append(missing, "pid", proc.FieldPPID, proc.FieldExe, proc.FieldCmdline)
	} else {
		info, _ := proc.Lookup(ow.pid)
		ev.PID = ow.pid
		ev.Exe, ev.Cmdline, ev.CmdlineTruncated = info.Exe, info.Cmdline, info.Truncated
		for _, f := range info.Missing {
			if f != proc.FieldUID {
				missing = append(missing, f)
			}
		}
		if !slices.Contains(info.Missing, proc.FieldPPID) {
			ev.PPID = info.PPID
		}
		if !slices.Contains(info.Missing, proc.FieldUID) {
			uid, haveUID = info.UID, true
		}
	}
	if haveUID {
		ev.UID = &uid
		ev.User = o.users.Name(uid)
	} else {
		missing = append(missing, proc.FieldUID)
	}
	if ev.User == "" {
		missing = append(missing, "user")
	}
	ev.Missing = missing
}
