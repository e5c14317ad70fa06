//go:build linux

package proc

import (
	"errors"
	"io"
	"os"
	"strconv"
)

// Lookup reads the identity of process pid from /proc. It always returns an Info with
// PID set; the fields it could not read are zero and named in Info.Missing, and err
// (a join of *Error values) says why. errors.Is(err, fs.ErrNotExist) means the process
// has exited. Lookup only reads files under /proc/<pid>.
func Lookup(pid int32) (Info, error) {
	info := Info{PID: pid}
	dir := "/proc/" + strconv.FormatInt(int64(pid), 10) + "/"
	var errs []error

	if st, err := readStatus(dir); err != nil {
		errs = append(errs, &Error{PID: pid, File: "status", Err: err})
		info.Missing = append(info.Missing, FieldPPID, FieldUID)
	} else {
		info.PPID, info.UID, info.EUID = st.PPID, st.UID, st.EUID
	}

	if exe, err := os.Readlink(dir + "exe"); err != nil {
		errs = append(errs, &Error{PID: pid, File: "exe", Err: unwrapPath(err)})
		info.Missing = append(info.Missing, FieldExe)
	} else {
		info.Exe = exe
	}

	raw, err := readBounded(dir+"cmdline", MaxCmdline+1)
	if err != nil {
		errs = append(errs, &Error{PID: pid, File: "cmdline", Err: unwrapPath(err)})
		info.Missing = append(info.Missing, FieldCmdline)
	} else {
		info.Cmdline, info.Truncated = JoinCmdline(raw, MaxCmdline)
		if info.Cmdline == "" {
			// Kernel threads and zombies have none: that is not a known-empty command.
			info.Missing = append(info.Missing, FieldCmdline)
		}
	}
	return info, errors.Join(errs...)
}

func readStatus(dir string) (StatusFields, error) {
	data, err := readBounded(dir+"status", 16<<10)
	if err != nil {
		return StatusFields{}, unwrapPath(err)
	}
	return ParseStatus(data)
}

// readBounded reads at most max bytes of a (proc) file.
func readBounded(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, max)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}

// unwrapPath drops the *PathError layer: Error already names the file.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
