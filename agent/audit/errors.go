package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors, for errors.Is.
var (
	// ErrClosed is returned by the methods of a Log after Close.
	ErrClosed = errors.New("audit log is closed")
	// ErrBroken wraps the first write or fsync error of a Log. After it the Log refuses
	// every Append: what reached the disk is unknown, so the owner must Close it and Open
	// the directory again, which repairs a torn tail.
	ErrBroken = errors.New("audit log is broken by an earlier write error")
	// ErrLocked is returned by Open when another process holds the directory.
	ErrLocked = errors.New("audit log directory is in use by another process")
	// ErrAckBeyondHead is returned by SetAcked for a seq the log does not hold (yet).
	ErrAckBeyondHead = errors.New("acked seq is beyond the durable head")
	// ErrNoSegments is returned by Verify for a directory without segment files.
	ErrNoSegments = errors.New("no audit segments found")
	// ErrInvalidPayload is returned by Append for a payload it must not store.
	ErrInvalidPayload = errors.New("invalid audit payload")
)

// CorruptionError says Open found damage it must not repair on its own: a bad entry
// followed by good ones, damage in a segment other than the last, or segments that do
// not chain. The agent must not start on such a log; an operator runs
// `tripwire audit verify` and decides (see docs/formats/audit-chain.md).
type CorruptionError struct {
	Segment string // segment file name
	Offset  int64  // byte offset of the bad line in the segment
	Seq     uint64 // seq expected at that offset
	Reason  string
}

// Error says where the log is corrupted and what to do about it.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("audit log corrupted in segment %s at offset %d (seq %d): %s; run `tripwire audit verify` and see docs/formats/audit-chain.md",
		e.Segment, e.Offset, e.Seq, e.Reason)
}

// VerifyError names the first entry at which Verify found the chain broken.
type VerifyError struct {
	Seq     uint64 // seq expected at Offset: the first entry that does not verify
	Segment string // segment file name
	Offset  int64  // byte offset of the bad line in the segment
	Reason  string
	// Incomplete is true when the only problem is an unterminated final line or an empty
	// final segment: a torn tail that Open would cut off, or a write in progress when
	// Verify runs on a live log.
	Incomplete bool
}

// Error names the first entry that does not verify.
func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d (segment %s, offset %d): %s", e.Seq, e.Segment, e.Offset, e.Reason)
}
