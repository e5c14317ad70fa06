//go:build !linux && !darwin && !windows

package procwatch

import (
	"errors"
	"strings"
	"testing"
)

func TestOtherPlatformsSayTheyAreBlind(t *testing.T) {
	rules := []Rule{{Name: "shells", Cmdline: []string{"*sh -i*"}}}
	for _, mode := range []string{ModeEBPF, ModeNetlink} {
		if _, err := New(rules, Options{ForceMode: mode}); !errors.Is(err, ErrNotSupported) {
			t.Errorf("New(%s) = %v, want ErrNotSupported", mode, err)
		}
	}
	w, err := New(rules, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer w.Close()
	if w.Mode() != ModeProc || !strings.Contains(w.Degraded(), "no process execution is seen") {
		t.Errorf("mode %q degraded %q", w.Mode(), w.Degraded())
	}
}
