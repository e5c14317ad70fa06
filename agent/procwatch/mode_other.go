//go:build !linux && !darwin && !windows

package procwatch

import (
	"fmt"
	"os"
)

// openSource starts watching in one mode. Outside Linux there is no process event
// source and no /proc: proc mode runs but sees nothing, and says so in Degraded.
func openSource(mode string, _ Options, _ *enricher) (source, error) {
	if mode == ModeProc {
		return &blindSource{stop: make(chan struct{})}, nil
	}
	return nil, fmt.Errorf("%s: %w", mode, ErrNotSupported)
}

// blindSource is proc mode where processes cannot be listed.
type blindSource struct {
	stop chan struct{}
}

func (s *blindSource) mode() string { return ModeProc }

func (s *blindSource) limits() string {
	return "proc: this platform has no /proc and listing its processes is not implemented, so no process execution is seen"
}

func (s *blindSource) read(func(*execRecord)) error {
	<-s.stop
	return nil
}

func (s *blindSource) kernelLost() (uint64, bool) { return 0, false }

func (s *blindSource) close() error {
	close(s.stop)
	return nil
}

// keyOfFile is never needed here: no executable is held open for hashing.
func keyOfFile(*os.File) (fileKey, error) {
	return fileKey{}, fmt.Errorf("file identity: %w", ErrNotSupported)
}
