package procwatch

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// openSource starts watching in one mode. macOS has neither eBPF nor the process
// connector: proc mode polls the kernel's process table through sysctl.
func openSource(mode string, opts Options, en *enricher) (source, error) {
	if mode != ModeProc {
		return nil, fmt.Errorf("%s: %w", mode, ErrNotSupported)
	}
	s, err := openTable(en, sysctlTable{}, opts.PollInterval)
	if err != nil {
		return nil, fmt.Errorf("listing processes with sysctl kern.proc.all: %w", err)
	}
	return s, nil
}

// sysctlTable is macOS's process table: kern.proc.all lists the processes, and
// kern.procargs2 gives the exec path and argv of one (root can read every process's).
type sysctlTable struct{}

func (sysctlTable) list() (map[int32]listedProc, error) {
	kps, err := unix.SysctlKinfoProcSlice("kern.proc.all")
	if err != nil {
		return nil, err
	}
	out := make(map[int32]listedProc, len(kps))
	for i := range kps {
		kp := &kps[i]
		out[kp.Proc.P_pid] = listedProc{
			ppid:  kp.Eproc.Ppid,
			start: kp.Proc.P_starttime.Nano() / 1000,
			comm:  unix.ByteSliceToString(kp.Proc.P_comm[:]),
			uid:   int64(kp.Eproc.Pcred.P_ruid),
			gid:   int64(kp.Eproc.Pcred.P_rgid),
			ids:   true,
		}
	}
	return out, nil
}

func (sysctlTable) describe(pid int32) procDetail {
	if pid <= 0 {
		return procDetail{}
	}
	b, err := unix.SysctlRaw("kern.procargs2", int(pid))
	if err != nil {
		return procDetail{}
	}
	pa, err := parseProcArgs(b)
	if err != nil {
		return procDetail{}
	}
	d := procDetail{filename: pa.execPath, cmdline: pa.cmdline, truncated: pa.truncated, haveCmdline: true}
	if filepath.IsAbs(pa.execPath) {
		d.exe = pa.execPath
	}
	return d
}

func (sysctlTable) limits() string {
	return "the executable is the path the process was executed by (kern.procargs2), read only for processes the agent may inspect (all of them as root); cwd and cgroup are never known"
}

// keyOfFile is the identity of an open file's content now.
func keyOfFile(f *os.File) (fileKey, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileKey{}, err
	}
	return fileKey{
		dev: uint64(uint32(st.Dev)), ino: st.Ino, size: st.Size,
		mtimeNs: st.Mtim.Nano(), ctimeNs: st.Ctim.Nano(),
	}, nil
}
