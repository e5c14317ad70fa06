//go:build linux

package procwatch

import "fmt"

// openSource starts watching in one mode.
func openSource(mode string, opts Options, en *enricher) (source, error) {
	switch mode {
	case ModeEBPF:
		return openEBPF(en, 0)
	case ModeNetlink:
		return openNetlink(en)
	case ModeProc:
		return openProc(en, opts.PollInterval)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}
