package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/proto/chain"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// centralRulesFile, in the audit directory, keeps the last central rule set applied,
// so that a restart without the collector applies it again.
const centralRulesFile = "central-rules.json"

// ruleSet is the persisted form of a central rule set.
type ruleSet struct {
	Version string        `json:"version"`
	Rules   []config.Rule `json:"rules"`
}

// watchSet is what applies the rules in force: one watcher per rule type and the
// filter built from the same rules. Guarded by Agent.mu.
type watchSet struct {
	central  ruleSet
	rules    []config.Rule // local, then central
	watchers []*namedWatcher
}

// current returns the watchers in force.
func (a *Agent) current() []*namedWatcher {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.set.watchers)
}

// tracked returns every watcher this agent ran, retired ones included, so that their
// losses are still recorded.
func (a *Agent) tracked() []*namedWatcher {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.everWatched)
}

// centralVersion is the version of the central rule set in force ("" if none).
func (a *Agent) centralVersion() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.set.central.Version
}

// onRules hands a pushed rule set to runWatchers, replacing one not yet taken.
func (a *Agent) onRules(rs *tripwirev1.RuleSet) {
	for {
		select {
		case a.rulesC <- rs:
			return
		default:
			select {
			case <-a.rulesC:
			default:
			}
		}
	}
}

// loadCentralRules reads the persisted central rule set; none is not an error.
func loadCentralRules(dir string) (ruleSet, error) {
	data, err := os.ReadFile(filepath.Join(dir, centralRulesFile))
	if os.IsNotExist(err) {
		return ruleSet{}, nil
	}
	if err != nil {
		return ruleSet{}, err
	}
	var rs ruleSet
	if err := json.Unmarshal(data, &rs); err != nil {
		return ruleSet{}, fmt.Errorf("%s: %w", centralRulesFile, err)
	}
	if err := config.CheckRules(centralRulesFile, rs.Rules); err != nil {
		return ruleSet{}, err
	}
	return rs, nil
}

// saveCentralRules persists rs atomically.
func saveCentralRules(dir string, rs ruleSet) error {
	data, err := json.Marshal(rs)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, centralRulesFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, centralRulesFile))
}

// merge returns the local rules and the central ones whose names no local rule takes
// (a local rule wins a clash), and the names of the central rules left out.
func merge(local, central []config.Rule) (rules []config.Rule, shadowed []string) {
	rules = slices.Clone(local)
	for _, c := range central {
		if slices.ContainsFunc(local, func(l config.Rule) bool { return l.Name == c.Name }) {
			shadowed = append(shadowed, c.Name)
			continue
		}
		rules = append(rules, c)
	}
	return rules, shadowed
}

// applyRuleSet puts a pushed central rule set in force: the watchers whose rules
// change are replaced (the new one watching before the old one stops, except a network
// watcher, whose decoy ports the new one must bind), the set is persisted, and the
// chain records what was applied — or why it was refused.
func (a *Agent) applyRuleSet(ctx context.Context, rs *tripwirev1.RuleSet, errc chan<- error) {
	if rs.GetVersion() == a.centralVersion() {
		return
	}
	var central []config.Rule
	err := json.Unmarshal(rs.GetRulesJson(), &central)
	if err == nil {
		err = config.CheckRules("central rules "+rs.GetVersion(), central)
	}
	if err != nil {
		a.notice("rules_refused", fmt.Sprintf("central rule set %s refused, the rules in force stay: %v", rs.GetVersion(), err))
		return
	}
	rules, shadowed := merge(a.cfg.Rules, central)
	a.mu.Lock()
	old := a.set
	a.mu.Unlock()
	byType := map[string]*namedWatcher{}
	for _, w := range old.watchers {
		byType[w.name] = w
	}
	var (
		next    []*namedWatcher
		changed []string
		failed  []string
	)
	for _, typ := range watcherTypes {
		prev := byType[typ]
		if rulesKey(rulesOf(typ, rules)) == rulesKey(rulesOf(typ, old.rules)) {
			if prev != nil {
				next = append(next, prev)
			}
			continue
		}
		if prev != nil && typ == config.TypeNetwork {
			prev.stop()
		}
		w, err := newWatcherOf(typ, a.cfg, rules, a.logger)
		if err != nil && prev != nil && typ == config.TypeNetwork {
			// Put the old network watcher back rather than leave its ports unwatched.
			w, _ = newWatcherOf(typ, a.cfg, old.rules, a.logger)
			prev = nil
		}
		if err != nil {
			failed = append(failed, err.Error())
			if w == nil && prev != nil {
				next = append(next, prev) // the old one keeps watching
			}
			if w != nil {
				w.start(ctx, a.events, errc)
				next = append(next, w)
				a.track(w)
			}
			continue
		}
		if w != nil {
			w.start(ctx, a.events, errc)
			next = append(next, w)
			a.track(w)
		}
		if prev != nil && typ != config.TypeNetwork {
			prev.stop()
		}
		changed = append(changed, typ)
	}
	if len(failed) > 0 {
		// Some watchers could not take the new rules: the set is not in force as a whole.
		a.mu.Lock()
		a.set.watchers = next
		a.mu.Unlock()
		a.notice("rules_failed", fmt.Sprintf("central rule set %s could not be applied in full: %s", rs.GetVersion(), strings.Join(failed, "; ")))
		return
	}
	set := ruleSet{Version: rs.GetVersion(), Rules: central}
	if err := saveCentralRules(a.cfg.Audit.Dir, set); err != nil {
		a.logger.Error("persisting central rules (in force until restart)", "err", err)
	}
	a.mu.Lock()
	a.set = watchSet{central: set, rules: rules, watchers: next}
	a.mu.Unlock()
	a.filter.Store(newFilter(rules, a.redactor, &a.suppressed))
	msg := fmt.Sprintf("central rule set %s applied: %d central rules; watchers replaced: %s", rs.GetVersion(), len(central), orNone(changed))
	if len(shadowed) > 0 {
		msg += "; local rules of the same name kept instead of: " + strings.Join(shadowed, ", ")
	}
	a.notice("rules_applied", msg)
	a.logger.Info("central rules applied", "version", rs.GetVersion(), "rules", len(central), "replaced", changed)
}

func (a *Agent) track(w *namedWatcher) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.everWatched = append(a.everWatched, w)
}

// notice queues an agent notice for the chain.
func (a *Agent) notice(what, msg string) {
	a.notices <- chain.Payload{Kind: chain.KindAgent, Notice: &chain.Notice{What: what, Message: msg}}
}
