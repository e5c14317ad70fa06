// Package sigwatch records the signals sent to the agent and who sent them, so that an
// agent that goes quiet because it was stopped or killed leaves evidence in its own
// audit chain: "quiet because blind" is never mistaken for "quiet".
//
// On Linux an eBPF program on the signal:signal_generate tracepoint sees every signal
// aimed at the agent's process with the sender's PID, user and command name. Records
// reach the running agent through a ring buffer, and are also kept in a small ring in a
// map pinned on bpffs (/sys/fs/bpf/tripwire), which outlives the agent: the sender of a
// SIGKILL, which leaves the victim no time to write anything, is read back and recorded
// by the next agent to start. Elsewhere, and without CAP_BPF and CAP_PERFMON, Start
// fails with an error saying so and the agent records only what its own signal handlers
// see.
package sigwatch

import (
	"fmt"
	"time"
)

// DefaultPinDir is where the ring of kept records is pinned.
const DefaultPinDir = "/sys/fs/bpf/tripwire"

// Signal is one signal sent to the agent.
type Signal struct {
	At         time.Time // when it was generated
	Sig        int
	Name       string // e.g. "SIGKILL"
	Code       int    // si_code: 0 kill(2), -6 tkill(2), 128 sent by the kernel
	TargetPID  int32  // the agent process it was aimed at
	SenderPID  int32
	SenderUID  int64
	SenderComm string
	bootNs     uint64
}

// Describe says what happened, for the audit chain.
func (s Signal) Describe() string {
	from := fmt.Sprintf("pid %d (%s, uid %d)", s.SenderPID, s.SenderComm, s.SenderUID)
	if s.Code == 0x80 {
		from = "the kernel (in the context of " + from + ")"
	}
	return fmt.Sprintf("%s sent to agent pid %d by %s", s.Name, s.TargetPID, from)
}
