package storage

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// ValidateTriage refuses a status that is not one of TriageStatuses, and text no
// backend can hold.
func ValidateTriage(status, by, note string) error {
	if !slices.Contains(TriageStatuses, status) {
		return fmt.Errorf("%w: status %q is not one of %s", ErrInvalidTriage, status, strings.Join(TriageStatuses, ", "))
	}
	for _, f := range [...]struct{ name, v string }{{"by", by}, {"note", note}} {
		if reason := badText(f.v); reason != "" {
			return fmt.Errorf("%w: %s %s", ErrInvalidTriage, f.name, reason)
		}
	}
	return nil
}

// ValidateCountFilter refuses a CountFilter AlertCounts cannot serve: no time range, an
// interval under a second or not whole seconds, an unknown group, or more intervals
// between From and To than MaxCountBuckets.
func ValidateCountFilter(f CountFilter) error {
	switch {
	case f.Alert.From.IsZero() || f.Alert.To.IsZero():
		return fmt.Errorf("counting alerts: from and to are required")
	case f.Interval < time.Second || f.Interval%time.Second != 0:
		return fmt.Errorf("counting alerts: interval %v is not a whole number of seconds ≥ 1s", f.Interval)
	case !slices.Contains(GroupByKeys, f.GroupBy):
		return fmt.Errorf("counting alerts: group %q is not one of %s", f.GroupBy, strings.Join(GroupByKeys, ", "))
	}
	if n := BucketSpan(f); n > MaxCountBuckets {
		return fmt.Errorf("counting alerts: %w: %d intervals of %v between from and to, at most %d", ErrTooManyBuckets, n, f.Interval, MaxCountBuckets)
	}
	return nil
}

// BucketSpan is the number of intervals of f's length in [From, To), rounded up: the
// bound MaxCountBuckets applies to before anything is counted (the aligned buckets of
// the range can be one more; the store's own limit on the result catches that).
func BucketSpan(f CountFilter) int64 {
	d := f.Alert.To.Sub(f.Alert.From)
	if d <= 0 || f.Interval <= 0 {
		return 0
	}
	n := int64(d / f.Interval)
	if d%f.Interval != 0 {
		n++
	}
	return n
}

// ValidateRules refuses, before anything is written, rules no backend keeps: a missing
// name, type or severity, a body that is not a JSON object, text that is not UTF-8 or
// holds a NUL byte, or a name given twice in one host scope. The error wraps
// ErrInvalidRule and names the rule.
func ValidateRules(rules []RuleRecord) error {
	seen := map[RuleKey]bool{}
	for i, r := range rules {
		name := fmt.Sprintf("rule %d (%q, host %q)", i, r.Name, r.Host)
		switch {
		case r.Name == "" || r.Type == "" || r.Severity == "":
			return fmt.Errorf("%w: %s: name, type and severity are required", ErrInvalidRule, name)
		case len(r.Body) == 0 || r.Body[0] != '{':
			return fmt.Errorf("%w: %s: the body is not a JSON object", ErrInvalidRule, name)
		case seen[RuleKey{r.Host, r.Name}]:
			return fmt.Errorf("%w: %s: the name is given twice for this host", ErrInvalidRule, name)
		}
		seen[RuleKey{r.Host, r.Name}] = true
		for _, v := range [...]string{r.Name, r.Host, r.Type, r.Severity, string(r.Body)} {
			if reason := badText(v); reason != "" {
				return fmt.Errorf("%w: %s: text %s", ErrInvalidRule, name, reason)
			}
		}
	}
	return nil
}

// DiffRules says what replacing old with new adds, changes and removes, each by key.
// Both are in (host, name) order, as Rules returns them.
func DiffRules(old, new []RuleRecord) RuleChanges {
	byKey := map[RuleKey]RuleRecord{}
	for _, r := range old {
		byKey[RuleKey{r.Host, r.Name}] = r
	}
	var c RuleChanges
	for _, r := range new {
		k := RuleKey{r.Host, r.Name}
		o, ok := byKey[k]
		switch {
		case !ok:
			c.Added = append(c.Added, k)
		case o.Type != r.Type || o.Severity != r.Severity || string(o.Body) != string(r.Body):
			c.Changed = append(c.Changed, k)
		}
		delete(byKey, k)
	}
	for _, r := range old {
		if k := (RuleKey{r.Host, r.Name}); byKey[k].Name != "" {
			c.Removed = append(c.Removed, k)
		}
	}
	return c
}

// JSONValue returns v as a Query result carries it to JSON: times as RFC 3339 strings
// in UTC, NaN and infinities as the strings "NaN", "+Inf" and "-Inf", bytes as text (base64 when not UTF-8), big numbers, UUIDs and other Stringers
// as their text, maps with keys as text; lists and other values are converted
// element by element or passed as they are.
func JSONValue(v any) any {
	switch x := v.(type) {
	case nil, bool, string, int8, int16, int32, int64, int, uint8, uint16, uint32, uint64, uint:
		return x
	case float32:
		return finite(float64(x))
	case float64:
		return finite(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case *time.Time:
		if x == nil {
			return nil
		}
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case *big.Int:
		return x.String()
	case fmt.Stringer:
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = JSONValue(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = JSONValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = JSONValue(e)
		}
		return out
	}
	return v
}

// finite returns f, or its name when JSON has no number for it.
func finite(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}

// MergeCounts sums two lists of count buckets in (time, key) order into one, in that
// order: a backend that counts two kinds of alert in two places adds them up here.
func MergeCounts(a, b []CountBucket) []CountBucket {
	if len(b) == 0 {
		return a
	}
	type bk struct {
		t   int64
		key string
	}
	sum := make(map[bk]uint64, len(a)+len(b))
	for _, c := range append(slices.Clone(a), b...) {
		sum[bk{c.Time.UnixNano(), c.Key}] += c.Count
	}
	out := make([]CountBucket, 0, len(sum))
	for k, n := range sum {
		out = append(out, CountBucket{Time: time.Unix(0, k.t).UTC(), Key: k.key, Count: n})
	}
	slices.SortFunc(out, func(x, y CountBucket) int {
		if c := x.Time.Compare(y.Time); c != 0 {
			return c
		}
		return strings.Compare(x.Key, y.Key)
	})
	return out
}
