//go:build !linux

package watcher

import "fmt"

func newFanotifyWatcher([]*target, Options) (FileWatcher, error) {
	return nil, fmt.Errorf("fanotify: %w", ErrNotSupported)
}
