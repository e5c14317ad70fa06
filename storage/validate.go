package storage

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tripwire-project/tripwire/proto/batch"
)

// MinTime and MaxTime bound the event times every backend accepts: [MinTime, MaxTime),
// the years 1678 to 2261 in UTC. Times are kept as signed 64-bit nanoseconds since the
// epoch (DuckDB's TIMESTAMP_NS, ClickHouse's and PostgreSQL's Int64/bigint), which span
// 1677-09-21 to 2262-04-11; whole years inside that leave out DuckDB's infinity values
// and meet the DuckDB driver, which refuses any time in 1677. The wire cannot carry a
// time outside that span either (Arrow timestamp[ns]).
var (
	MinTime = time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ValidateEntries refuses, before anything is written, entries that no backend can
// hold; the error wraps ErrInvalidEntry and names the seq and the field.
func ValidateEntries(hostID string, entries []batch.Entry) error {
	if hostID == "" {
		return fmt.Errorf("%w: empty host id", ErrInvalidEntry)
	}
	if reason := badText(hostID); reason != "" {
		return fmt.Errorf("%w: host id %s", ErrInvalidEntry, reason)
	}
	for i := range entries {
		e := &entries[i]
		if e.Seq == 0 || e.Seq > math.MaxInt64 {
			return fmt.Errorf("%w: seq %d is outside 1..%d", ErrInvalidEntry, e.Seq, int64(math.MaxInt64))
		}
		if e.Time.Before(MinTime) || !e.Time.Before(MaxTime) {
			return fmt.Errorf("%w: seq %d: time %s is outside the years %d to %d", ErrInvalidEntry,
				e.Seq, e.Time.UTC().Format(time.RFC3339Nano), MinTime.Year(), MaxTime.Year()-1)
		}
		for _, f := range [...]struct{ name, v string }{
			{"kind", e.Kind}, {"tripwire_type", e.Type}, {"rule_name", e.Rule}, {"severity", e.Severity},
			{"prev_hash", e.PrevHash}, {"hash", e.Hash}, {"payload", string(e.Payload)},
		} {
			if reason := badText(f.v); reason != "" {
				return fmt.Errorf("%w: seq %d: %s %s", ErrInvalidEntry, e.Seq, f.name, reason)
			}
		}
	}
	return nil
}

func badText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "holds a NUL byte"
	}
	return ""
}

// SortedUnique returns the entries in seq order with the first of each seq kept,
// leaving the caller's slice untouched.
func SortedUnique(entries []batch.Entry) []batch.Entry {
	out := slices.Clone(entries)
	slices.SortStableFunc(out, func(a, b batch.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	return slices.CompactFunc(out, func(a, b batch.Entry) bool { return a.Seq == b.Seq })
}
