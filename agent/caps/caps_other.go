//go:build !linux

package caps

import "runtime"

// Effective reports no Linux capabilities: other platforms have none.
func Effective() (map[string]bool, error) { return map[string]bool{}, nil }

// KernelRelease names the platform.
func KernelRelease() string { return runtime.GOOS }
