//go:build !linux

package watcher

// kernelHelpers are the Linux-only child actions; there are none elsewhere.
var kernelHelpers = map[string]func(args []string) error{}
