package procwatch

import (
	"os"
	"slices"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// Names of the fields a mode can fail to fill, as chain.Event.Missing lists them (the
// JSON names of the chain.Event fields).
const (
	fieldPPID      = "ppid"
	fieldUID       = "uid"
	fieldGID       = "gid"
	fieldUser      = "user"
	fieldExe       = "exe"
	fieldComm      = "comm"
	fieldCmdline   = "cmdline"
	fieldCwd       = "cwd"
	fieldCgroup    = "cgroup"
	fieldParentExe = "parent_exe"
	fieldSHA256    = "exe_sha256"
)

// execRecord is one exec as a mode saw it, enriched from /proc while the process was
// (perhaps) still alive. It is made by the kernel reader and consumed by Run.
type execRecord struct {
	pid, ppid int32
	uid, gid  int64
	comm      string
	// filename is the path given to execve (ebpf mode only), absolute when it was
	// given so or the working directory was known; filenameReal has its symlinks
	// resolved.
	filename, filenameReal string
	cmdline                string
	cmdlineTruncated       bool
	exe, cwd, parentExe    string
	cgroup                 string
	// missing lists the fields above that are not known (zero values are then not
	// facts), by their chain.Event JSON names.
	missing []string

	// sha256 is the executable's hash when the cache knew it; otherwise exeFile, if
	// not nil, is the executable held open (identified by exeKey) for Run to hash.
	sha256  string
	exeFile *os.File
	exeKey  fileKey
}

func (r *execRecord) lacks(field string) bool { return slices.Contains(r.missing, field) }

// release closes the executable held for hashing, if any.
func (r *execRecord) release() {
	if r.exeFile != nil {
		r.exeFile.Close()
		r.exeFile = nil
	}
}

// info is what the matcher looks at.
func (r *execRecord) info() *execInfo {
	return &execInfo{
		Filename:     r.filename,
		FilenameReal: r.filenameReal,
		Exe:          r.exe,
		Comm:         r.comm,
		Cmdline:      r.cmdline,
		HaveCmdline:  !r.lacks(fieldCmdline),
		SHA256:       r.sha256,
	}
}

// event is the chain.Event of r for one rule, user name given.
func (r *execRecord) event(mode string, ru *rule, user string) chain.Event {
	ev := chain.Event{
		Type:      chain.TypeProcess,
		Rule:      ru.name,
		Severity:  ru.severity,
		Source:    mode,
		Count:     1,
		PID:       r.pid,
		PPID:      r.ppid,
		User:      user,
		Exe:       r.exe,
		Comm:      r.comm,
		Cmdline:   r.cmdline,
		Cwd:       r.cwd,
		Cgroup:    r.cgroup,
		ParentExe: r.parentExe,
		ExeSHA256: r.sha256,

		CmdlineTruncated: r.cmdlineTruncated,
	}
	if !r.lacks(fieldUID) {
		uid := r.uid
		ev.UID = &uid
	}
	if !r.lacks(fieldGID) {
		gid := r.gid
		ev.GID = &gid
	}
	if len(r.missing) > 0 {
		ev.Missing = slices.Clone(r.missing)
	}
	return ev
}
