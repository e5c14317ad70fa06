package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCentralRulesPushedAndApplied: `rules apply` on the collector reaches the running
// agent, which applies the rules within 2 s (a process tripwire it did not have now
// fires), records the version in its chain, keeps its local rules, and after a restart
// without the collector still applies the persisted set.
func TestCentralRulesPushedAndApplied(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("central-01", "WARN")
	agent := e.startAgent(cfg, hz)
	waitFor(t, 10*time.Second, "the agent connected", func() (bool, string) {
		var h struct {
			Collector struct{ Connected bool } `json:"collector"`
		}
		getJSON("http://"+hz+"/healthz", "", &h)
		return h.Collector.Connected, ""
	})

	rulesFile := filepath.Join(e.dir, "rules.yaml")
	writeFile(t, rulesFile, `rules:
  - {name: netcat, type: process, names: [nc], severity: CRITICAL}
  - {name: decoy, type: file, paths: [/nonexistent], severity: INFO}
  - {name: other-host-only, type: process, names: [true], severity: INFO, host: elsewhere}
`)
	applied := time.Now()
	if out, err := run(t, "tripwire-collector", "rules", "apply", "-f", rulesFile, "--config", filepath.Join(e.dir, "collector.yaml")); err != nil {
		t.Fatalf("rules apply: %v\n%s", err, out)
	}
	var h struct {
		Version  string `json:"central_rules_version"`
		Watchers []struct{ Name, Mode string }
	}
	waitFor(t, 2*time.Second, "the agent applying the central rules", func() (bool, string) {
		if err := getJSON("http://"+hz+"/healthz", "", &h); err != nil {
			return false, err.Error()
		}
		return h.Version != "" && watcherMode(healthzReport{Watchers: toWatchers(h.Watchers)}, "process") != "", fmt.Sprintf("%+v", h)
	})
	t.Logf("central rules in force %v after rules apply returned", time.Since(applied).Round(time.Millisecond))

	nc := nobody("nc", "-z", "127.0.0.1", "1")
	nc.Run()
	a := e.waitAlert(5*time.Second, "type=PROCESS&host=central-01", func(a alert) bool { return a.EventDetail.PID == nc.Process.Pid })
	if a.RuleName != "netcat" || a.Severity != "CRITICAL" {
		t.Errorf("alert %+v, want the central rule netcat", a)
	}
	// The local rule "decoy" wins the name clash: the decoy file still trips it.
	reader := nobody("cat", decoy)
	reader.Run()
	e.waitAlert(5*time.Second, "type=FILE&host=central-01", func(a alert) bool {
		return a.EventDetail.PID == reader.Process.Pid && a.RuleName == "decoy" && a.Severity == "WARN"
	})
	auditDir := filepath.Join(e.dir, "audit-central-01")
	text := chainText(t, auditDir)
	if !strings.Contains(text, `"what":"rules_applied"`) || !strings.Contains(text, h.Version) || !strings.Contains(text, "local rules of the same name kept instead of: decoy") {
		t.Errorf("the chain does not record the rules applied:\n%s", lastLines(text, 4))
	}
	var persisted struct {
		Version string
		Rules   []struct{ Name string }
	}
	data, err := os.ReadFile(filepath.Join(auditDir, "central-rules.json"))
	if err != nil || json.Unmarshal(data, &persisted) != nil || persisted.Version != h.Version || len(persisted.Rules) != 2 {
		t.Fatalf("persisted central rules = %s (err %v), want version %s with 2 rules (not the other host's)", data, err, h.Version)
	}

	// Restart with the collector gone: the persisted set is in force at once.
	agent.stop(syscall.SIGTERM)
	e.coll.stop(syscall.SIGTERM)
	e.startAgent(cfg, hz)
	if err := getJSON("http://"+hz+"/healthz", "", &h); err != nil || h.Version != persisted.Version {
		t.Fatalf("after a restart without the collector: %+v (err %v), want version %s", h, err, persisted.Version)
	}
}

func toWatchers(ws []struct{ Name, Mode string }) []struct{ Name, Mode, Degraded string } {
	out := make([]struct{ Name, Mode, Degraded string }, len(ws))
	for i, w := range ws {
		out[i].Name, out[i].Mode = w.Name, w.Mode
	}
	return out
}
