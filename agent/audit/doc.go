// Package audit is the agent's append-only, SHA-256 hash-chained audit log. It is also
// the agent's durable outbound queue: the pipeline appends every event to it, and the
// shipper reads entries back from the last seq the collector acknowledged.
//
// The log is a directory of segment files, seg-<first seq, 20 digits>.log, each holding
// one entry per line:
//
//	{"hash":"<64 hex>","prev":"<64 hex>","payload":<payload JSON text>}\n
//
// where hash = hex(sha256(prev || payload)) as defined in package proto/chain. A segment
// other than the first opens with an anchor entry naming the previous segment's last seq
// and hash. docs/formats/audit-chain.md documents the format for other readers.
//
// Durability: Append returns only after its entries are written and fsynced. Concurrent
// callers share fsyncs (group commit), so throughput grows with the number of callers and
// with the number of payloads per call. Readers (ReadFrom, Head) only ever see fsynced
// entries, so nothing is shipped that a crash could take back.
//
// Recovery: Open checks the chain of the last segment and cuts off a torn tail left by a
// crash, recording the cut as a chain entry of kind "truncation". Damage that is not a
// torn tail is never repaired: Open returns a *CorruptionError and the operator runs
// Verify (`tripwire audit verify`), which names the first bad seq, segment and offset.
package audit
