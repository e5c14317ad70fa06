//go:build !linux

package proc

// Lookup is not supported outside Linux: it returns an Info with only PID set, every
// field named in Missing, and ErrNotSupported.
func Lookup(pid int32) (Info, error) {
	return Info{PID: pid, Missing: []string{FieldPPID, FieldUID, FieldExe, FieldCmdline}}, ErrNotSupported
}
