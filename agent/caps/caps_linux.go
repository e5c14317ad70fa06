package caps

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Effective returns, for each capability in All, whether this process holds it in its
// effective set.
func Effective() (map[string]bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, fmt.Errorf("capget: %w", err)
	}
	held := map[string]bool{}
	for _, name := range All() {
		b := bits[name]
		held[name] = data[b/32].Effective&(1<<(b%32)) != 0
	}
	return held, nil
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}
