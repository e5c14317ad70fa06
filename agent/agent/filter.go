package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/agent/redact"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// filter is what every event passes through between its watcher and the chain: a hit
// by an allowlisted actor is counted and dropped, and secrets are redacted from what is
// kept. It is used by the pipeline goroutine only, except suppressedByRule.
type filter struct {
	allow      map[string]config.Allow // by rule name; only rules with an allowlist
	redactor   *redact.Redactor
	hashes     map[fileKey]string
	redacted   map[string]redaction // recent command lines: a burst repeats one
	suppressed *sync.Map            // rule name → *atomic.Uint64, shared by the filters an agent replaces
}

func newFilter(rules []config.Rule, r *redact.Redactor, suppressed *sync.Map) *filter {
	f := &filter{allow: map[string]config.Allow{}, redactor: r, hashes: map[fileKey]string{}, redacted: map[string]redaction{}, suppressed: suppressed}
	for _, rule := range rules {
		if !rule.Allow.Empty() {
			f.allow[rule.Name] = rule.Allow
		}
	}
	return f
}

// pass redacts ev in place and says whether it is to be recorded.
func (f *filter) pass(ev *chain.Event) bool {
	if a, ok := f.allow[ev.Rule]; ok && f.allowed(a, ev) {
		n, _ := f.suppressed.LoadOrStore(ev.Rule, new(atomic.Uint64))
		n.(*atomic.Uint64).Add(max(ev.Count, 1))
		return false
	}
	var c1, c2 bool
	ev.Cmdline, c1 = f.redact(ev.Cmdline)
	ev.FirstBytes, c2 = f.redact(ev.FirstBytes)
	ev.Redacted = ev.Redacted || c1 || c2
	return true
}

// redaction is a redacted text and whether anything was cut from it.
type redaction struct {
	text    string
	changed bool
}

// redact redacts s, remembering the last thousand results: the patterns cost tens of
// microseconds a line, and a burst repeats one command line thousands of times.
func (f *filter) redact(s string) (string, bool) {
	if s == "" {
		return s, false
	}
	if r, ok := f.redacted[s]; ok {
		return r.text, r.changed
	}
	text, changed := f.redactor.String(s)
	if len(f.redacted) >= 1000 {
		clear(f.redacted)
	}
	f.redacted[s] = redaction{text, changed}
	return text, changed
}

// suppressedByRule returns how many hits each rule's allowlist has dropped.
func (f *filter) suppressedByRule() map[string]uint64 {
	out := map[string]uint64{}
	f.suppressed.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

func (f *filter) allowed(a config.Allow, ev *chain.Event) bool {
	if ev.User != "" && slices.Contains(a.Users, ev.User) {
		return true
	}
	if ev.UID != nil && slices.Contains(a.Users, strconv.FormatInt(*ev.UID, 10)) {
		return true
	}
	if ev.Exe != "" && matchAny(a.Exes, ev.Exe) {
		return true
	}
	if len(a.Parents) > 0 {
		parent := ev.ParentExe
		if parent == "" && ev.PPID > 0 {
			parent, _ = os.Readlink("/proc/" + strconv.Itoa(int(ev.PPID)) + "/exe")
		}
		if parent != "" && matchAny(a.Parents, parent) {
			return true
		}
	}
	if len(a.ExeSHA256) > 0 {
		sum := ev.ExeSHA256
		if sum == "" {
			sum = f.hash(ev.Exe)
		}
		if sum != "" && slices.Contains(a.ExeSHA256, sum) {
			return true
		}
	}
	return false
}

func matchAny(globs []string, path string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, path); ok {
			return true
		}
	}
	return false
}

// fileKey names one version of a file, so a hash is recomputed when it changes.
type fileKey struct {
	path  string
	size  int64
	mtime time.Time
}

// hash returns the SHA-256 of the file at path, cached per version; "" if unreadable.
func (f *filter) hash(path string) string {
	if path == "" {
		return ""
	}
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return ""
	}
	k := fileKey{path, st.Size(), st.ModTime()}
	if h, ok := f.hashes[k]; ok {
		return h
	}
	file, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return ""
	}
	if len(f.hashes) > 4096 {
		clear(f.hashes)
	}
	f.hashes[k] = hex.EncodeToString(h.Sum(nil))
	return f.hashes[k]
}
