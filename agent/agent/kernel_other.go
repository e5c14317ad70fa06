//go:build !linux

package agent

// kernelRelease is not reported off Linux.
func kernelRelease() string { return "" }
