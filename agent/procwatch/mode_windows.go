package procwatch

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// openSource starts watching in one mode. Windows has neither eBPF nor the process
// connector: proc mode polls a Toolhelp snapshot of the processes.
func openSource(mode string, opts Options, en *enricher) (source, error) {
	if mode != ModeProc {
		return nil, fmt.Errorf("%s: %w", mode, ErrNotSupported)
	}
	s, err := openTable(en, toolhelpTable{}, opts.PollInterval)
	if err != nil {
		return nil, fmt.Errorf("listing processes with CreateToolhelp32Snapshot: %w", err)
	}
	return s, nil
}

// toolhelpTable is Windows's process table: a Toolhelp snapshot lists the processes
// (pid, parent, executable name), and each one opened with
// PROCESS_QUERY_LIMITED_INFORMATION gives its creation time and full image path.
type toolhelpTable struct{}

func (toolhelpTable) list() (map[int32]listedProc, error) {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(snap)
	out := map[int32]listedProc{}
	pe := windows.ProcessEntry32{Size: uint32(unsafe.Sizeof(windows.ProcessEntry32{}))}
	for err = windows.Process32First(snap, &pe); err == nil; err = windows.Process32Next(snap, &pe) {
		out[int32(pe.ProcessID)] = listedProc{
			ppid:  int32(pe.ParentProcessID),
			start: creationTime(pe.ProcessID),
			comm:  windows.UTF16ToString(pe.ExeFile[:]),
		}
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return nil, err
	}
	return out, nil
}

// creationTime is the process's creation time in 100 ns units since 1601, or 0 if
// the process cannot be opened (protected processes, or it has exited).
func creationTime(pid uint32) int64 {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return 0
	}
	defer windows.CloseHandle(h)
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return 0
	}
	return int64(created.HighDateTime)<<32 | int64(created.LowDateTime)
}

func (toolhelpTable) describe(pid int32) procDetail {
	if pid <= 0 {
		return procDetail{}
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return procDetail{}
	}
	defer windows.CloseHandle(h)
	exe, err := imagePath(h)
	if err != nil {
		return procDetail{}
	}
	return procDetail{exe: exe}
}

// imagePath is the full path of an open process's executable.
func imagePath(h windows.Handle) (string, error) {
	for _, size := range []int{windows.MAX_PATH + 1, windows.MAX_LONG_PATH} {
		buf := make([]uint16, size)
		n := uint32(len(buf))
		err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n)
		if err == nil {
			return windows.UTF16ToString(buf[:n]), nil
		}
		if !errors.Is(err, windows.ERROR_INSUFFICIENT_BUFFER) {
			return "", err
		}
	}
	return "", windows.ERROR_INSUFFICIENT_BUFFER
}

func (toolhelpTable) limits() string {
	return "the command line (in the process's own memory) and the user (in its token) are not read, so cmdline rules never match and uid, gid and user are missing; the executable path is known only for processes the agent may open"
}

// keyOfFile is the identity of an open file's content now. Windows has no change
// time: the creation time stands in for it.
func keyOfFile(f *os.File) (fileKey, error) {
	var d windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(windows.Handle(f.Fd()), &d); err != nil {
		return fileKey{}, err
	}
	return fileKey{
		dev:     uint64(d.VolumeSerialNumber),
		ino:     uint64(d.FileIndexHigh)<<32 | uint64(d.FileIndexLow),
		size:    int64(d.FileSizeHigh)<<32 | int64(d.FileSizeLow),
		mtimeNs: d.LastWriteTime.Nanoseconds(),
		ctimeNs: d.CreationTime.Nanoseconds(),
	}, nil
}
