// Package chain defines the tamper-evident audit chain shared by the agent (which
// writes it), the collector (which anchors it) and the forensics tools (which verify it
// offline): the hash of an entry, the canonical payload it covers, and the kinds of
// entry. The definition is chosen so that one DuckDB expression recomputes it:
//
//	hash = sha256(prev_hash || payload)
//
// where prev_hash is the previous entry's hash as 64 lowercase hex characters (64 zeros
// for the first entry of a chain), payload is the exact stored payload text, and
// sha256() returns lowercase hex, as DuckDB's sha256(VARCHAR) does. See
// docs/formats/audit-chain.md.
package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// HashLen is the length of a hash in its hex text form.
const HashLen = 64

// GenesisPrev is the prev_hash of the first entry of every chain.
var GenesisPrev = strings.Repeat("0", HashLen)

// Hash returns the hex hash of an entry whose previous hash is prev (hex) and whose
// stored payload text is payload.
func Hash(prev string, payload []byte) string {
	var sum [sha256.Size]byte
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(payload)
	h.Sum(sum[:0])
	return hex.EncodeToString(sum[:])
}

// AppendHash appends the hex hash of (prev, payload) to dst and returns it; it is Hash
// without allocating, for the hot append and verify paths.
func AppendHash(dst []byte, prev []byte, payload []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(payload)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return hex.AppendEncode(dst, sum[:])
}

// Kind says what an entry records.
type Kind string

// Entry kinds. Events are tripwire hits; the others record the chain's own life so that
// a quiet chain can be told apart from a blind one.
const (
	KindEvent      Kind = "event"      // a tripwire fired
	KindAnchor     Kind = "anchor"     // first entry of a segment: names the previous one
	KindTruncation Kind = "truncation" // a torn tail was cut off at start-up
	KindGap        Kind = "gap"        // a watcher or buffer lost events: the count
	KindAgent      Kind = "agent"      // agent lifecycle: start, stop, config, mode changes
)

// Tripwire types, as the API and the Arrow schema spell them.
const (
	TypeFile    = "FILE"
	TypeNetwork = "NETWORK"
	TypeProcess = "PROCESS"
)

// Severities a rule may carry.
const (
	SeverityInfo     = "INFO"
	SeverityWarn     = "WARN"
	SeverityCritical = "CRITICAL"
)

// Payload is the canonical content of one chain entry. It is serialised with
// encoding/json (field order fixed by this struct) and the resulting text is stored and
// hashed verbatim; readers must hash the stored text, never a re-serialisation. Seq is
// the first field so that the stored text of every payload starts with {"seq":N.
type Payload struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"ts"`
	Kind   Kind      `json:"kind"`
	Event  *Event    `json:"event,omitempty"`
	Anchor *Anchor   `json:"anchor,omitempty"`
	Notice *Notice   `json:"notice,omitempty"`
}

// Event is a tripwire hit with everything the watcher knew about who tripped it. Fields
// a platform cannot provide are left empty and named in Missing.
type Event struct {
	Type     string `json:"type"`     // FILE, NETWORK or PROCESS
	Rule     string `json:"rule"`     // the rule's name
	Severity string `json:"severity"` // INFO, WARN or CRITICAL
	Source   string `json:"source"`   // the watcher mode that saw it, e.g. "fanotify", "fsnotify"

	// File tripwires.
	Path string `json:"path,omitempty"`
	Op   string `json:"op,omitempty"` // read, write, open, close_write, create, remove, rename, chmod
	// Count is how many raw events this one stands for (coalesced bursts); 1 if not coalesced.
	Count uint64 `json:"count,omitempty"`

	// The acting process, where the watcher can know it.
	PID     int32  `json:"pid,omitempty"`
	PPID    int32  `json:"ppid,omitempty"`
	UID     *int64 `json:"uid,omitempty"`
	User    string `json:"user,omitempty"`
	Exe     string `json:"exe,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// CmdlineTruncated says Cmdline was cut at the watcher's bound: never silently.
	CmdlineTruncated bool `json:"cmdline_truncated,omitempty"`

	// Process tripwires (and the acting process of others, where known).
	GID       *int64 `json:"gid,omitempty"`
	Comm      string `json:"comm,omitempty"`       // the kernel's task name (15 bytes)
	ParentExe string `json:"parent_exe,omitempty"` // the parent's executable
	Cwd       string `json:"cwd,omitempty"`
	Cgroup    string `json:"cgroup,omitempty"`     // cgroup path or container id
	ExeSHA256 string `json:"exe_sha256,omitempty"` // content hash of the executable, hex

	// Network tripwires.
	Protocol  string `json:"protocol,omitempty"`  // tcp, tcp6
	Direction string `json:"direction,omitempty"` // inbound, outbound
	Mode      string `json:"mode,omitempty"`      // decoy or monitor
	SrcIP     string `json:"src_ip,omitempty"`
	SrcPort   uint16 `json:"src_port,omitempty"`
	DstIP     string `json:"dst_ip,omitempty"`
	DstPort   uint16 `json:"dst_port,omitempty"`
	// FirstBytes is what a decoy's caller sent first (bounded), as Go-quoted text.
	FirstBytes string `json:"first_bytes,omitempty"`

	// Missing names the fields this watcher mode cannot provide (e.g. "pid" under
	// fsnotify), so that an empty field is never mistaken for a known-empty one. With
	// Source it is the event's capability mask: every field of the event's type not
	// named here is authoritative on this platform.
	Missing []string `json:"missing,omitempty"`
	// Redacted says secrets were cut out of Cmdline or FirstBytes before the event was
	// recorded (see agent/redact).
	Redacted bool `json:"redacted,omitempty"`
}

// Anchor opens a segment and names where the previous segment ended.
type Anchor struct {
	PrevSegment string `json:"prev_segment"`
	PrevSeq     uint64 `json:"prev_seq"`
	PrevHash    string `json:"prev_hash"`
}

// Notice records something about the agent or the chain itself: a truncated torn tail,
// lost events, a start or a stop.
type Notice struct {
	What    string `json:"what"`              // e.g. "torn_tail_truncated", "agent_started"
	Message string `json:"message,omitempty"` // for a human
	// Lost is the number of events a gap stands for.
	Lost uint64 `json:"lost,omitempty"`
	// Bytes is the number of bytes cut off a torn tail.
	Bytes int64 `json:"bytes,omitempty"`
	// Segment names the segment file concerned, where there is one.
	Segment string `json:"segment,omitempty"`
	// Signal is the signal a "signal_received" or "signal_before_start" notice records.
	Signal *Signal `json:"signal,omitempty"`
}

// Signal is a signal sent to the agent, and who sent it.
type Signal struct {
	Name       string    `json:"name"` // e.g. SIGKILL
	Number     int       `json:"number"`
	Code       int       `json:"code"` // si_code: 0 kill(2), -6 tkill(2), 128 the kernel
	At         time.Time `json:"at"`
	TargetPID  int32     `json:"target_pid"` // the agent process
	SenderPID  int32     `json:"sender_pid"`
	SenderUID  int64     `json:"sender_uid"`
	SenderComm string    `json:"sender_comm"`
}
