package forensics

import (
	"context"
	"time"
)

// Entry is one chain entry as a source holds it. Payload is the exact text the hash
// covers; Time, Kind, Type, Rule and Severity are read from it (or from the store's
// columns) for filtering and convenience, and are not themselves covered by the hash.
type Entry struct {
	HostID   string
	Seq      uint64
	Time     time.Time // zero when the payload does not state one
	Kind     string
	Type     string // FILE, NETWORK, PROCESS; empty for entries that are not events
	Rule     string
	Severity string
	PrevHash string
	Hash     string
	Payload  []byte
}

// Host is a chain a source holds.
type Host struct {
	ID   string
	Name string // the host name, or ID where the source knows none
	// HeadSeq and HeadHash are the head the source vouches for independently of the
	// entries (the collector's stored chain head); 0 and "" where it has none.
	HeadSeq  uint64
	HeadHash string
	// ForkOf is set on a fork (ADR 0014): the chain this one departs from at ForkSeq,
	// the first seq at which the two differ. "" and 0 for a host's own chain, and where
	// the source does not know.
	ForkOf  string
	ForkSeq uint64
}

// Source is where an export reads chains from: an agent's segment directory, the
// collector's embedded DuckDB file, or a storage.Store (ClickHouse and PostgreSQL). A Source is
// used by one goroutine at a time.
type Source interface {
	// Describe names the source for the export's metadata, e.g. "dir:/var/lib/…".
	Describe() string
	// Hosts lists the chains the source holds, by host id.
	Hosts(ctx context.Context) ([]Host, error)
	// Entries calls fn for every entry of the host's chain in the source's order (the
	// order of the lines in the segment files; seq order in a store), stopping at fn's
	// first error, which it returns. The Entry and its Payload are valid only during the
	// call: the source reuses them, so that an export streams in bounded memory.
	Entries(ctx context.Context, hostID string, fn func(*Entry) error) error
	// Close releases the source.
	Close() error
}

// Noter is implemented by sources that can leave something out of an export and say
// so, e.g. a torn final line of a segment directory. The exporter records each note in
// export_meta (key source_note) and in its Summary.
type Noter interface {
	// Notes returns what the last Entries calls left out, for a human.
	Notes() []string
}

// Filter selects what an export carries in full. Zero fields do not filter. From is
// inclusive and To exclusive, on the time in the payload. Type and Rule select events
// only: the chain's own entries (anchors, gaps, truncations, agent notices) in the time
// range are always exported in full, since a gap or a restart is part of any story.
type Filter struct {
	Host     string // host id or host name: only that chain is exported
	From, To time.Time
	Type     string // FILE, NETWORK or PROCESS: events of that type only
	Rule     string // events of that rule only
}

// IsZero reports whether f selects everything.
func (f Filter) IsZero() bool {
	return f.Host == "" && f.From.IsZero() && f.To.IsZero() && f.Type == "" && f.Rule == ""
}

// selectsHost reports whether the chain of h is exported.
func (f Filter) selectsHost(h Host) bool {
	return f.Host == "" || f.Host == h.ID || f.Host == h.Name
}

// Match reports whether e is exported in full; the others of a selected chain are
// exported as stubs (seq and hashes, no payload), so that links still verify.
func (f Filter) Match(e *Entry) bool {
	if !f.From.IsZero() && (e.Time.IsZero() || e.Time.Before(f.From)) {
		return false
	}
	if !f.To.IsZero() && (e.Time.IsZero() || !e.Time.Before(f.To)) {
		return false
	}
	if e.Kind != "event" {
		return true
	}
	if f.Type != "" && e.Type != f.Type {
		return false
	}
	if f.Rule != "" && e.Rule != f.Rule {
		return false
	}
	return true
}
