// Package caps says which Linux capabilities the agent holds and which each of its
// watchers needs, so that `tripwire doctor` can name the exact capability that would
// enable a missing mode, and the systemd unit can grant only those.
package caps

// Capability names and numbers (linux/capability.h).
const (
	DACReadSearch  = "CAP_DAC_READ_SEARCH"
	NetBindService = "CAP_NET_BIND_SERVICE"
	NetAdmin       = "CAP_NET_ADMIN"
	SysPtrace      = "CAP_SYS_PTRACE"
	SysAdmin       = "CAP_SYS_ADMIN"
	Perfmon        = "CAP_PERFMON"
	BPF            = "CAP_BPF"
)

var bits = map[string]uint{
	DACReadSearch: 2, NetBindService: 10, NetAdmin: 12, SysPtrace: 19, SysAdmin: 21, Perfmon: 38, BPF: 39,
}

// Need is one thing a watcher mode needs, and why.
type Need struct {
	Cap string
	Why string
}

// Requirement lists what one watcher mode needs.
type Requirement struct {
	Watcher string // file, process, network, signals
	Mode    string
	Needs   []Need
}

// Requirements is the table documented in docs/capabilities.md and granted by
// deploy/systemd/tripwire-agent.service; keep the three in step.
var Requirements = []Requirement{
	{"file", "fanotify", []Need{
		{SysAdmin, "fanotify_init with permission events (FAN_CLASS_CONTENT) and filesystem marks"},
		{SysPtrace, "reading /proc/<pid>/exe and cwd of other users' processes"},
		{DACReadSearch, "marking watched paths in directories the agent's user cannot search"},
	}},
	{"file", "fsnotify", nil},
	{"process", "ebpf", []Need{
		{BPF, "loading the sched_process_exec program and its ring buffer"},
		{Perfmon, "attaching to a tracepoint and reading the new process's argv"},
		{SysPtrace, "enriching events from /proc/<pid> (exe, cwd, parent)"},
	}},
	{"process", "netlink", []Need{
		{NetAdmin, "joining the process connector's multicast group"},
		{SysPtrace, "reading /proc/<pid>/exe of other users' processes"},
	}},
	{"process", "proc", []Need{{SysPtrace, "reading /proc/<pid>/exe of other users' processes"}}},
	{"network", "ebpf", []Need{
		{BPF, "loading the inet_sock_set_state program"},
		{Perfmon, "attaching to a tracepoint"},
		{SysPtrace, "naming the process that owns a socket (/proc/<pid>/fd)"},
	}},
	{"network", "sockdiag", []Need{{SysPtrace, "naming the process that owns a socket (/proc/<pid>/fd)"}}},
	{"network", "decoy", []Need{{NetBindService, "decoy ports below 1024 only"}}},
	{"signals", "ebpf", []Need{
		{BPF, "loading the signal_generate program"},
		{Perfmon, "attaching to a tracepoint"},
		{SysAdmin, "mounting bpffs at /sys/fs/bpf when it is not mounted at boot"},
	}},
}

// Missing returns the needs of req that held is missing.
func (r Requirement) Missing(held map[string]bool) []Need {
	var out []Need
	for _, n := range r.Needs {
		if !held[n.Cap] {
			out = append(out, n)
		}
	}
	return out
}

// All returns every capability the table names, in a fixed order.
func All() []string {
	return []string{SysAdmin, BPF, Perfmon, NetAdmin, SysPtrace, DACReadSearch, NetBindService}
}
