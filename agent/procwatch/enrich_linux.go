//go:build linux

package procwatch

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/agent/proc"
)

// image identifies the executable the kernel loaded, so that /proc can be checked to
// still show the same process image (not a later exec, nor a reused pid).
type image struct {
	dev, ino uint64
}

// fromKernel fills the parts of r that only /proc has (exe, cwd, cgroup path, parent
// executable) for an exec the kernel described in full (ebpf mode). want is the file
// the kernel loaded: /proc is used only while it still shows that image. When it does
// not (the process has exited or exec'd again), the file name is resolved instead.
func (en *enricher) fromKernel(r *execRecord, want image) {
	dir := procDir(r.pid)
	var st unix.Stat_t
	alive := unix.Stat(dir+"exe", &st) == nil && st.Dev == want.dev && st.Ino == want.ino
	if alive {
		r.cwd = readlinkOr(dir+"cwd", &r.missing, fieldCwd)
		if r.filename != "" && !filepath.IsAbs(r.filename) && r.cwd != "" {
			r.filename = filepath.Join(r.cwd, r.filename)
		}
		r.exe = readlinkOr(dir+"exe", &r.missing, fieldExe)
		if cg, ok := readCgroup(dir); ok {
			r.cgroup = cg
		}
		if r.lacks(fieldCmdline) {
			cmdlineFromProc(r, dir)
		}
		en.holdExe(r, dir+"exe", &st)
	} else {
		r.missing = append(r.missing, fieldCwd)
	}
	if resolvable(r.filename) {
		if real, err := filepath.EvalSymlinks(r.filename); err == nil {
			r.filenameReal = real
		}
	}
	if !alive {
		en.exeFromFilename(r, want)
	}
	r.parentExe = readlinkOr(procDir(r.ppid)+"exe", &r.missing, fieldParentExe)
}

// resolvable says a file name given to execve can be resolved here: it is absolute
// and not a descriptor path (fexecve's /dev/fd/N would resolve to the agent's own
// descriptor).
func resolvable(name string) bool {
	return filepath.IsAbs(name) && !strings.HasPrefix(name, "/dev/fd/") && !strings.HasPrefix(name, "/proc/")
}

// cmdlineFromProc reads the command line the kernel could not copy (its pages were
// not resident) from /proc, for a process that is still alive.
func cmdlineFromProc(r *execRecord, dir string) {
	f, err := os.Open(dir + "cmdline")
	if err != nil {
		return
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, proc.MaxCmdline+1))
	if err != nil || len(raw) == 0 {
		return
	}
	r.cmdline, r.cmdlineTruncated = proc.JoinCmdline(raw, proc.MaxCmdline)
	r.missing = slices.DeleteFunc(r.missing, func(f string) bool { return f == fieldCmdline })
}

// exeFromFilename names (and holds for hashing) the executable of a process that is
// gone, through its file name: the resolved name if it still leads to the loaded
// image, else the name as given if absolute.
func (en *enricher) exeFromFilename(r *execRecord, want image) {
	var st unix.Stat_t
	if r.filenameReal != "" && unix.Stat(r.filenameReal, &st) == nil && st.Dev == want.dev && st.Ino == want.ino {
		r.exe = r.filenameReal
		en.holdExe(r, r.filenameReal, &st)
		return
	}
	if filepath.IsAbs(r.filename) {
		r.exe = r.filename
		return
	}
	r.missing = append(r.missing, fieldExe)
}

// fromProc fills r, which has only its pid, from /proc (netlink and proc modes). What
// cannot be read (the process has exited) is listed in r.missing.
func (en *enricher) fromProc(r *execRecord) {
	dir := procDir(r.pid)
	var st unix.Stat_t
	statErr := unix.Stat(dir+"exe", &st)
	info, _ := proc.Lookup(r.pid)
	r.ppid, r.uid, r.exe = info.PPID, info.UID, info.Exe
	r.cmdline, r.cmdlineTruncated = info.Cmdline, info.Truncated
	r.missing = append(r.missing, info.Missing...)
	if gid, ok := readGID(dir); ok {
		r.gid = gid
	} else {
		r.missing = append(r.missing, fieldGID)
	}
	if comm, err := os.ReadFile(dir + "comm"); err == nil {
		r.comm = strings.TrimSuffix(string(comm), "\n")
	} else {
		r.missing = append(r.missing, fieldComm)
	}
	r.cwd = readlinkOr(dir+"cwd", &r.missing, fieldCwd)
	if cg, ok := readCgroup(dir); ok {
		r.cgroup = cg
	} else {
		r.missing = append(r.missing, fieldCgroup)
	}
	if r.lacks(fieldPPID) {
		r.missing = append(r.missing, fieldParentExe)
	} else {
		r.parentExe = readlinkOr(procDir(r.ppid)+"exe", &r.missing, fieldParentExe)
	}
	if statErr == nil {
		en.holdExe(r, dir+"exe", &st)
	}
}

// holdExe looks the executable at path (whose stat is st) up in the hash cache and,
// if the cache does not know it, opens it for Run to hash.
func (en *enricher) holdExe(r *execRecord, path string, st *unix.Stat_t) {
	if !en.hashing {
		return
	}
	k := keyOf(st)
	if sum, ok := en.hashes.get(k); ok {
		r.sha256 = sum
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	if now, err := keyOfFile(f); err != nil || now != k {
		f.Close() // replaced between the stat and the open
		return
	}
	r.exeFile, r.exeKey = f, k
}

// keyOfFile is the identity of an open file's content now.
func keyOfFile(f *os.File) (fileKey, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileKey{}, err
	}
	return keyOf(&st), nil
}

func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{
		dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtimeNs: st.Mtim.Nano(), ctimeNs: st.Ctim.Nano(),
	}
}

func procDir(pid int32) string { return "/proc/" + strconv.FormatInt(int64(pid), 10) + "/" }

// readlinkOr returns the target of a /proc link, or "" with field added to missing.
func readlinkOr(path string, missing *[]string, field string) string {
	s, err := os.Readlink(path)
	if err != nil {
		*missing = append(*missing, field)
		return ""
	}
	return s
}

// readGID returns the real group id from /proc/<pid>/status.
func readGID(dir string) (int64, bool) {
	data, err := os.ReadFile(dir + "status")
	if err != nil {
		return 0, false
	}
	_, rest, ok := bytes.Cut(data, []byte("\nGid:"))
	if !ok {
		return 0, false
	}
	f := bytes.Fields(rest)
	if len(f) == 0 {
		return 0, false
	}
	gid, err := strconv.ParseUint(string(f[0]), 10, 32)
	return int64(gid), err == nil
}

// readCgroup returns the cgroup of the process whose /proc directory is dir (see
// parseCgroup).
func readCgroup(dir string) (string, bool) {
	data, err := os.ReadFile(dir + "cgroup")
	if err != nil {
		return "", false
	}
	return parseCgroup(data)
}
