// Package proc reads the identity of a running process — its parent, real user,
// executable and command line — from the /proc filesystem, and resolves user ids to
// names through a small cache.
//
// Watchers call Lookup while the process is still alive (for fanotify permission
// events: while it is blocked in open(2)), so Lookup does nothing but a few small reads
// under /proc. It never opens a file outside /proc, which matters because the file
// watcher answers permission events from the goroutine that calls it: opening a watched
// file there would deadlock. User names are resolved separately, by Users, which does
// read /etc/passwd and must therefore never run on that goroutine.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// MaxCmdline is the number of bytes of a command line that Lookup keeps; a longer one
// is cut there and flagged in Info.Truncated.
const MaxCmdline = 4096

// ErrNotSupported is returned by Lookup on platforms without a Linux /proc.
var ErrNotSupported = errors.New("process lookup is not supported on this platform")

// Names of the fields Lookup can fail to read, as Info.Missing lists them. They are the
// JSON names of the matching chain.Event fields.
const (
	FieldPPID    = "ppid"
	FieldUID     = "uid"
	FieldExe     = "exe"
	FieldCmdline = "cmdline"
)

// Info is what /proc said about one process at one moment.
type Info struct {
	PID  int32
	PPID int32
	// UID is the real user id; EUID the effective one (they differ for setuid
	// programs).
	UID  int64
	EUID int64
	// Exe is the target of /proc/<pid>/exe; it ends in " (deleted)" when the binary
	// was removed after it started.
	Exe string
	// Cmdline is the argument vector joined with single spaces, at most MaxCmdline
	// bytes.
	Cmdline string
	// Truncated says Cmdline was cut at MaxCmdline bytes.
	Truncated bool
	// Missing names the fields that could not be read (FieldPPID, FieldUID, FieldExe,
	// FieldCmdline); those fields are zero and must not be taken as known.
	Missing []string
}

// Error says which /proc file of which process could not be read.
type Error struct {
	PID  int32
	File string // "status", "exe" or "cmdline"
	Err  error
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("reading /proc/%d/%s: %v", e.PID, e.File, e.Err)
}

// Unwrap returns the underlying error, so that errors.Is(err, fs.ErrNotExist) says the
// process is gone.
func (e *Error) Unwrap() error { return e.Err }

// StatusFields holds what Lookup takes from /proc/<pid>/status.
type StatusFields struct {
	PPID      int32
	UID, EUID int64
}

// ParseStatus extracts the parent pid and the real and effective user ids from the
// text of /proc/<pid>/status. It fails if either line is absent or malformed.
func ParseStatus(data []byte) (StatusFields, error) {
	var s StatusFields
	var havePPID, haveUID bool
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch string(key) {
		case "PPid":
			n, err := strconv.ParseInt(string(bytes.TrimSpace(val)), 10, 32)
			if err != nil {
				return s, fmt.Errorf("parsing PPid %q: %w", bytes.TrimSpace(val), err)
			}
			s.PPID, havePPID = int32(n), true
		case "Uid":
			f := bytes.Fields(val)
			if len(f) < 2 {
				return s, fmt.Errorf("parsing Uid %q: want real and effective ids", bytes.TrimSpace(val))
			}
			ruid, err := strconv.ParseUint(string(f[0]), 10, 32)
			if err != nil {
				return s, fmt.Errorf("parsing real uid %q: %w", f[0], err)
			}
			euid, err := strconv.ParseUint(string(f[1]), 10, 32)
			if err != nil {
				return s, fmt.Errorf("parsing effective uid %q: %w", f[1], err)
			}
			s.UID, s.EUID, haveUID = int64(ruid), int64(euid), true
		}
		if havePPID && haveUID {
			return s, nil
		}
	}
	switch {
	case !havePPID:
		return s, errors.New("no PPid line")
	default:
		return s, errors.New("no Uid line")
	}
}

// JoinCmdline turns the NUL-separated contents of /proc/<pid>/cmdline into one line,
// arguments separated by single spaces, cut to max bytes (truncated reports the cut).
// A trailing NUL is dropped; data longer than max is treated as cut.
func JoinCmdline(data []byte, max int) (cmdline string, truncated bool) {
	if len(data) > max {
		data, truncated = data[:max], true
	}
	data = bytes.TrimRight(data, "\x00")
	out := bytes.ReplaceAll(data, []byte{0}, []byte{' '})
	return string(out), truncated
}
