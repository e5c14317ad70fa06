// Package storage defines what the collector needs from a store, whatever the backend:
// the embedded DuckDB file (storage/duckdb) by default, ClickHouse for history and
// PostgreSQL for the index in production. The collector depends only on Store.
package storage

import (
	"context"
	"errors"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
)

// Store holds hosts, their chain entries and the alerts derived from them.
//
// Implementations are safe for concurrent use by many goroutines. A Store never drops an
// entry it has acknowledged: AppendEntries returns nil only once every entry is durable,
// and the collector acks an agent only after that. When a backend is down, its methods
// return errors and the collector stops acking; agents keep entries in their chains and
// resend them, so an outage delays delivery and loses nothing.
type Store interface {
	// RegisterHost records a host's session: created on first sight, updated after.
	RegisterHost(ctx context.Context, h Host) error
	// Head returns the highest seq held contiguously from 1 for the host (0 if none),
	// with its hash.
	Head(ctx context.Context, hostID string) (seq uint64, hash string, err error)
	// AppendEntries stores entries of one host. It is idempotent on (host_id, seq): an
	// entry already held is left as it is, so a resent batch is stored once. Entries no
	// backend can hold as given are refused with an error wrapping ErrInvalidEntry, and
	// then nothing of the call is stored.
	AppendEntries(ctx context.Context, hostID string, entries []batch.Entry) error
	// TouchHost records that a host was heard from at t.
	TouchHost(ctx context.Context, hostID string, t time.Time) error

	// Alerts returns alerts matching f, newest first.
	Alerts(ctx context.Context, f AlertFilter) ([]Alert, error)
	// Hosts returns every known host, by name.
	Hosts(ctx context.Context) ([]Host, error)
	// Audit returns chain entries matching f, in (host_id, seq) order.
	Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)

	// Close releases the store.
	Close() error
}

// Host is an enrolled host as the collector knows it.
type Host struct {
	HostID          string    `json:"host_id"`
	Hostname        string    `json:"hostname"`
	OS              string    `json:"os"`
	Arch            string    `json:"arch"`
	Kernel          string    `json:"kernel"`
	AgentVersion    string    `json:"agent_version"`
	ProtocolVersion uint32    `json:"protocol_version"`
	Watchers        string    `json:"watchers"` // JSON array of watcher statuses as last reported
	FirstSeen       time.Time `json:"first_seen"`
	LastSeen        time.Time `json:"last_seen"`
	HeadSeq         uint64    `json:"head_seq"`
}

// Alert is an event entry of a chain: a tripwire that fired.
type Alert struct {
	AlertID      string    `json:"alert_id"`
	Host         string    `json:"host"`
	HostID       string    `json:"host_id"`
	Seq          uint64    `json:"seq"`
	Timestamp    time.Time `json:"timestamp"`
	TripwireType string    `json:"tripwire_type"`
	RuleName     string    `json:"rule_name"`
	Severity     string    `json:"severity"`
	// EventDetail is the event object of the entry's payload, as JSON.
	EventDetail RawJSON `json:"event_detail"`
}

// AuditEntry is one chain entry as stored, with its hash links.
type AuditEntry struct {
	Host     string    `json:"host"`
	HostID   string    `json:"host_id"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"timestamp"`
	Kind     string    `json:"kind"`
	PrevHash string    `json:"prev_hash"`
	Hash     string    `json:"hash"`
	// Payload is the exact stored payload text the hash covers.
	Payload string `json:"payload"`
}

// AlertFilter selects alerts. Zero fields do not filter. From is inclusive and To
// exclusive, on the event time. Limit 0 means 100 and is capped at 1000; Offset skips
// that many matches.
type AlertFilter struct {
	Host          string // host name or host id
	Type          string // FILE, NETWORK or PROCESS
	Severity      string
	From, To      time.Time
	Limit, Offset int
}

// AuditFilter selects chain entries. Zero fields do not filter. Host, From, To, Limit
// and Offset mean what they mean in AlertFilter.
type AuditFilter struct {
	Host          string // host name or host id
	From, To      time.Time
	Limit, Offset int
}

// RawJSON is JSON text passed through unchanged.
type RawJSON []byte

// MarshalJSON returns the text itself ("null" when empty).
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps a copy of the text.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// ErrNotFound is returned when a host or alert does not exist.
var ErrNotFound = errors.New("not found")

// ErrInvalidEntry is wrapped by AppendEntries errors for entries that cannot be stored as
// given, whatever the backend: seq 0 or above 2^63-1 (PostgreSQL has no unsigned
// bigint), text that is not valid UTF-8 or holds a NUL byte (PostgreSQL text and
// DuckDB VARCHAR refuse them), or an event time outside the years 1678 to 2261 (times
// are kept as 64-bit nanoseconds). Resending such an entry cannot succeed.
var ErrInvalidEntry = errors.New("invalid entry")
