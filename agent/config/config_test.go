package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/internal/yamlconf"
)

func TestLoadGood(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Host != "web-01" || len(cfg.Rules) != 1 || cfg.Rules[0].Severity != "CRITICAL" {
		t.Errorf("decoded %+v", cfg)
	}
	if want, _ := filepath.Abs("testdata/pki/ca.crt"); cfg.Collector.CA != want && !strings.HasSuffix(cfg.Collector.CA, "testdata/pki/ca.crt") {
		t.Errorf("ca not resolved against the config dir: %q", cfg.Collector.CA)
	}
	if cfg.Watchers.File.Mode != "auto" || cfg.Healthz != DefaultHealthz {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

// TestLoadBad walks testdata/*.bad.yml: every problem must name the file, line and key.
func TestLoadBad(t *testing.T) {
	want := map[string][]string{
		"unknown-key.bad.yml":     {"unknown-key.bad.yml:8: rules[0].severty: unknown key"},
		"bad-severity.bad.yml":    {`bad-severity.bad.yml:9: rules[1].severity: "HIGH" is not one of INFO, WARN, CRITICAL`},
		"unreadable-path.bad.yml": {`unreadable-path.bad.yml:9: rules[0].paths[1]: cannot watch "/nonexistent/decoy.txt": no such file or directory`},
		"missing-cert.bad.yml":    {`missing-cert.bad.yml:5: collector.cert: cannot read`},
		"several.bad.yml": {
			`several.bad.yml:1: host: "web 01" is not a valid host name`,
			`several.bad.yml:2: collector.address: "nowhere" is not host:port`,
			`several.bad.yml:3: audit.max_segment_mb: -1 is out of range`,
			`several.bad.yml:4: healthz: "0.0.0.0:9100" must be a loopback address`,
			`several.bad.yml:5: watchers.file.mode: "magic" is not one of auto, fanotify, fsnotify`,
			`several.bad.yml:7: rules[0].paths[0]: "etc/passwd" is not an absolute path`,
			`several.bad.yml:8: rules[1].name: "passwd" is already the name of rules[0]`,
			`several.bad.yml:8: rules[1].type: "dns" is not a supported rule type`,
		},
		"syntax.bad.yml": {"syntax.bad.yml:"},
		"shapes.bad.yml": {
			`shapes.bad.yml:4: watchers.process.mode: "kprobe" is not one of auto, ebpf, netlink, proc`,
			`shapes.bad.yml:5: redact.patterns[0]: not a regular expression`,
			`shapes.bad.yml:7: rules[0]: a process rule needs names, paths, cmdline or cmdline_regex`,
			`shapes.bad.yml:8: rules[1].ports: does not apply to a process rule`,
			`shapes.bad.yml:8: rules[1].names[0]: "/usr/bin/nc" is not a program name`,
			`shapes.bad.yml:8: rules[1].cmdline_regex[0]: not a regular expression`,
			`shapes.bad.yml:9: rules[2].ports[0]: 0 is not a TCP port`,
			`shapes.bad.yml:9: rules[2].ports[1]: 70000 is not a TCP port`,
			`shapes.bad.yml:9: rules[2].mode: "honeypot" is not one of decoy, monitor`,
			`shapes.bad.yml:10: rules[3].direction: a decoy only receives connections`,
			`shapes.bad.yml:10: rules[3].address: "nowhere" is not an IP address`,
			`shapes.bad.yml:11: rules[4].names: does not apply to a file rule`,
			`shapes.bad.yml:11: rules[4].allow.exe_sha256[0]: "ABC" is not a SHA-256`,
			`shapes.bad.yml:11: rules[4].allow.exes[0]: "relative" is not an absolute path or glob`,
		},
	}
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil || len(files) != len(want) {
		t.Fatalf("fixtures %v (err %v): every fixture needs expectations", files, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			_, err := Load(f)
			var cerr *yamlconf.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load(%s) = %v, want a *yamlconf.Error", f, err)
			}
			for _, w := range want[name] {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%s", w, err)
				}
			}
			if (name == "several.bad.yml" || name == "shapes.bad.yml") && len(cerr.Problems) != len(want[name]) {
				t.Errorf("got %d problems, want %d (all reported at once):\n%s", len(cerr.Problems), len(want[name]), err)
			}
		})
	}
}

func TestEmptyConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "empty.yml")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("Load(empty) = %v, want an error saying it is empty", err)
	}
}

// TestRuleShapes loads the rule shapes users write, one of each type and mode, with
// their defaults.
func TestRuleShapes(t *testing.T) {
	cfg, err := Load("testdata/shapes.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Watchers.Process.Mode != "netlink" || cfg.Watchers.Network.Mode != "sockdiag" || cfg.Watchers.File.Mode != "auto" {
		t.Errorf("watchers %+v", cfg.Watchers)
	}
	byName := map[string]Rule{}
	for _, r := range cfg.Rules {
		byName[r.Name] = r
	}
	if r := byName["netcat"]; r.Type != TypeProcess || len(r.Names) != 2 {
		t.Errorf("netcat = %+v", r)
	}
	if r := byName["ssh-decoy"]; r.Mode != NetModeDecoy || r.Direction != "" || r.Ports[0] != 2222 {
		t.Errorf("ssh-decoy = %+v", r)
	}
	if r := byName["outbound-smtp"]; r.Mode != NetModeMonitor || r.Direction != DirectionOutbound {
		t.Errorf("outbound-smtp = %+v (mode defaults to monitor)", r)
	}
	if r := byName["db-port"]; r.Direction != DirectionInbound {
		t.Errorf("db-port = %+v", r)
	}
	if r := byName["creds"]; r.Allow.Empty() || r.Allow.Users[1] != "34" {
		t.Errorf("creds allow = %+v", r.Allow)
	}
	re := byName["shell-flags"].CmdlineRegexps()
	if len(re) != 1 || !re[0].MatchString("x --exec=/bin/sh") {
		t.Errorf("shell-flags regexps = %v", re)
	}
}

func TestLoadRules(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(good, []byte(`rules:
  - {name: creds, type: file, paths: [/srv/app/secret.key], severity: CRITICAL}
  - {name: creds, type: file, paths: [/etc/shadow], severity: WARN, host: db-1}
  - {name: netcat, type: process, names: [nc], match_content: true, severity: CRITICAL}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := LoadRules(good)
	if err != nil {
		t.Fatalf("LoadRules: %v (a path absent here is fine: it is the agent's)", err)
	}
	if len(rules) != 3 || rules[1].Host != "db-1" || rules[0].Host != "" || !rules[2].MatchContent {
		t.Errorf("rules = %+v", rules)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`rules:
  - {name: creds, type: file, paths: [/a], severity: CRITICAL}
  - {name: creds, type: file, paths: [/b], severity: CRITICAL}
  - {name: x, type: process, names: [nc], severity: LOW, host: "bad host"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadRules(bad)
	for _, w := range []string{
		`bad.yaml:3: rules[1].name: "creds" is already the name of rules[0]`,
		`bad.yaml:4: rules[2].severity: "LOW" is not one of`,
		`bad.yaml:4: rules[2].host: "bad host" is not a valid host name`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("LoadRules(bad) = %v, want it to contain %q", err, w)
		}
	}
}
