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
			`several.bad.yml:8: rules[1].type: "network" is not a supported rule type`,
		},
		"syntax.bad.yml": {"syntax.bad.yml:"},
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
			if name == "several.bad.yml" && len(cerr.Problems) != len(want[name]) {
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
