//go:build !unix

package audit

import "io"

type noLock struct{}

func (noLock) Close() error { return nil }

// lockDir does not lock on platforms without flock.
func lockDir(string) (io.Closer, error) { return noLock{}, nil }
