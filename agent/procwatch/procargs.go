package procwatch

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/tripwire-project/tripwire/agent/proc"
)

// procArgs is what macOS's kern.procargs2 sysctl says of a process: the path it was
// executed by and its argument vector.
type procArgs struct {
	// execPath is the path execve was given, as the kernel saved it.
	execPath string
	// cmdline is argv joined by single spaces, at most proc.MaxCmdline bytes.
	cmdline   string
	truncated bool
}

// parseProcArgs decodes a kern.procargs2 buffer: argc as a 32-bit integer
// (little-endian: macOS runs on amd64 and arm64 only), the exec path and its NUL, the
// NULs that pad it to a word boundary, then argc NUL-terminated arguments (the
// environment that follows is ignored). An error names the byte at fault.
func parseProcArgs(b []byte) (procArgs, error) {
	if len(b) < 4 {
		return procArgs{}, fmt.Errorf("kern.procargs2: %d bytes, shorter than argc (4)", len(b))
	}
	argc := int32(binary.LittleEndian.Uint32(b))
	if argc < 0 {
		return procArgs{}, fmt.Errorf("kern.procargs2: argc %d at byte 0 is negative", argc)
	}
	end := bytes.IndexByte(b[4:], 0)
	if end < 0 {
		return procArgs{}, fmt.Errorf("kern.procargs2: exec path at byte 4 has no terminating NUL")
	}
	pa := procArgs{execPath: string(b[4 : 4+end])}
	start := 4 + end
	for start < len(b) && b[start] == 0 {
		start++
	}
	off := start
	for i := range argc {
		n := bytes.IndexByte(b[off:], 0)
		if n < 0 {
			return procArgs{}, fmt.Errorf("kern.procargs2: argument %d of %d at byte %d has no terminating NUL", i, argc, off)
		}
		off += n + 1
	}
	pa.cmdline, pa.truncated = proc.JoinCmdline(b[start:off], proc.MaxCmdline)
	return pa, nil
}
