package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
)

// RulesPollInterval is how often the collector reads the central rules: a change made
// by `rules apply` (through any collector replica) reaches connected agents within it.
const RulesPollInterval = 500 * time.Millisecond

// ruleFeed holds the central rules as last read from the store and wakes the streams
// when they change. The store is the only channel between replicas, so every replica
// reads it.
type ruleFeed struct {
	store storage.Store

	mu      sync.Mutex
	rules   []storage.RuleRecord
	version string        // of the whole table; "" before the first read
	changed chan struct{} // closed, and replaced, at each change
}

func newRuleFeed(store storage.Store) *ruleFeed {
	return &ruleFeed{store: store, changed: make(chan struct{})}
}

// run reads the rules every interval until ctx ends.
func (f *ruleFeed) run(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		rules, err := f.store.Rules(ctx, "")
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				logger.Warn("reading central rules (agents keep the set they have)", "err", err)
			}
			failing = true
		case err == nil:
			failing = false
			f.update(rules)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *ruleFeed) update(rules []storage.RuleRecord) {
	b, _ := json.Marshal(rules)
	sum := sha256.Sum256(b)
	v := hex.EncodeToString(sum[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	if v == f.version {
		return
	}
	f.rules, f.version = rules, v
	close(f.changed)
	f.changed = make(chan struct{})
}

// forHost returns the rule set of the named host — the global rules and its own, its
// own winning a name clash — and a channel closed at the next change. The set is nil
// before the rules were first read.
func (f *ruleFeed) forHost(host string) (*tripwirev1.RuleSet, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.version == "" {
		return nil, f.changed
	}
	byName := map[string]storage.RuleRecord{}
	for _, r := range f.rules {
		if r.Host == host || (r.Host == "" && byName[r.Name].Host == "") {
			byName[r.Name] = r
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range byName {
			if !yield(n) {
				return
			}
		}
	})
	bodies := make([]json.RawMessage, 0, len(names))
	for _, n := range names {
		bodies = append(bodies, json.RawMessage(byName[n].Body))
	}
	b, _ := json.Marshal(bodies)
	sum := sha256.Sum256(b)
	return &tripwirev1.RuleSet{Version: hex.EncodeToString(sum[:]), RulesJson: b}, f.changed
}
