package config

import (
	"fmt"
	"os"

	"github.com/tripwire-project/tripwire/internal/yamlconf"
)

// ScopedRule is a rule kept centrally by the collector: Host names the one host it
// applies to, or is empty for every host.
type ScopedRule struct {
	Rule `yaml:",inline"`
	Host string `yaml:"host" json:"host"`
}

// rulesFile is a central rules file: a top-level "rules" list in the agent's rule
// syntax, each rule optionally scoped to a host.
type rulesFile struct {
	Rules []ScopedRule `yaml:"rules"`
}

// LoadRules reads and validates a central rules file (`tripwire-collector rules apply
// -f`). Each rule is checked exactly as the agent checks its own, except that file
// paths need not exist on the machine reading the file. Names must be unique per host
// scope. The returned error lists every problem with file, line and key.
func LoadRules(path string) ([]ScopedRule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	var f rulesFile
	root, err := yamlconf.Decode(path, data, &f)
	if err != nil {
		return nil, err
	}
	v := yamlconf.NewValidator(path, root)
	if len(f.Rules) == 0 {
		v.Add("at least one rule is required", "rules")
	}
	rules := make([]Rule, len(f.Rules))
	for i := range f.Rules {
		f.Rules[i].applyDefaults()
		rules[i] = f.Rules[i].Rule
		if h := f.Rules[i].Host; h != "" && !hostnameRE.MatchString(h) {
			v.Add(fmt.Sprintf("%q is not a valid host name", h), "rules", i, "host")
		}
	}
	validateRules(v, rules, func(i int) string { return f.Rules[i].Host }, false)
	if err := v.Err(); err != nil {
		return nil, err
	}
	for i := range f.Rules {
		f.Rules[i].Rule = rules[i]
	}
	return f.Rules, nil
}

// CheckRules validates rules that did not come from a file — a central rule set pushed
// by the collector — as LoadRules would (file paths need not exist yet), applying
// defaults and compiling regular expressions in place. name labels the problems.
func CheckRules(name string, rules []Rule) error {
	v := yamlconf.NewValidator(name, nil)
	for i := range rules {
		rules[i].applyDefaults()
	}
	validateRules(v, rules, func(int) string { return "" }, false)
	return v.Err()
}
