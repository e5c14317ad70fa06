package procwatch

import (
	"bytes"
	"regexp"
)

// containerID finds a container runtime's id (64 hex digits) in a cgroup path, as
// docker, containerd, CRI-O and podman name their cgroups.
var containerID = regexp.MustCompile(`[0-9a-f]{64}`)

// parseCgroup takes the process's cgroup from the text of /proc/<pid>/cgroup: its
// cgroup v2 path, or its name=systemd (v1) path when v2 has nothing better than the
// root (a hybrid hierarchy), followed by " container=<id>" when any of its paths
// names a container.
func parseCgroup(data []byte) (string, bool) {
	var v2, systemd string
	var haveV2, haveSystemd bool
	id := ""
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if id == "" {
			id = containerID.FindString(string(line))
		}
		if p, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			v2, haveV2 = string(p), true
		} else if _, p, ok := bytes.Cut(line, []byte(":name=systemd:")); ok {
			systemd, haveSystemd = string(p), true
		}
	}
	path := v2
	switch {
	case haveSystemd && (!haveV2 || v2 == "/"):
		path = systemd
	case !haveV2:
		return "", false
	}
	if id != "" {
		path += " container=" + id
	}
	return path, true
}
