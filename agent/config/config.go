// Package config loads and validates the agent's config.yaml. Loading is strict: an
// unknown key, a bad value or an unreadable file refuses to start, and every problem is
// reported at once with the file, line and key that caused it.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/tripwire-project/tripwire/internal/yamlconf"
)

// Config is the agent's whole configuration.
type Config struct {
	// Host is this host's name as operators know it; the certificate names its id.
	Host      string    `yaml:"host"`
	Collector Collector `yaml:"collector"`
	Audit     Audit     `yaml:"audit"`
	// Healthz is the loopback address of the /healthz endpoint.
	Healthz  string   `yaml:"healthz"`
	Watchers Watchers `yaml:"watchers"`
	Rules    []Rule   `yaml:"rules"`
}

// Collector says where events go and how the agent proves who it is.
type Collector struct {
	Address string `yaml:"address"`
	CA      string `yaml:"ca"`
	Cert    string `yaml:"cert"`
	Key     string `yaml:"key"`
	// ServerName overrides the name checked in the collector's certificate (default: the
	// host part of Address).
	ServerName string `yaml:"server_name"`
}

// Audit configures the local hash-chained audit log.
type Audit struct {
	Dir          string `yaml:"dir"`
	MaxSegmentMB int    `yaml:"max_segment_mb"`
}

// Watchers picks each watcher's mode; "auto" takes the best the host allows.
type Watchers struct {
	File WatcherMode `yaml:"file"`
}

// WatcherMode forces a watcher mode.
type WatcherMode struct {
	Mode string `yaml:"mode"`
}

// Rule is one tripwire.
type Rule struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"`
	Paths    []string `yaml:"paths"`
	Severity string   `yaml:"severity"`
}

// Defaults.
const (
	DefaultHealthz      = "127.0.0.1:9100"
	DefaultMaxSegmentMB = 64
)

var (
	ruleTypes  = []string{"file"}
	severities = []string{"INFO", "WARN", "CRITICAL"}
	fileModes  = []string{"auto", "fanotify", "fsnotify"}
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// Load reads, decodes and validates the config at path. Relative file paths inside it
// are resolved against the config file's directory. A returned error lists every
// problem (a *yamlconf.Error).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg := &Config{}
	root, err := yamlconf.Decode(path, data, cfg)
	if err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	cfg.resolvePaths(filepath.Dir(path))
	v := yamlconf.NewValidator(path, root)
	cfg.validate(v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) applyDefaults() {
	if c.Healthz == "" {
		c.Healthz = DefaultHealthz
	}
	if c.Audit.MaxSegmentMB == 0 {
		c.Audit.MaxSegmentMB = DefaultMaxSegmentMB
	}
	if c.Watchers.File.Mode == "" {
		c.Watchers.File.Mode = "auto"
	}
}

func (c *Config) resolvePaths(base string) {
	for _, p := range []*string{&c.Collector.CA, &c.Collector.Cert, &c.Collector.Key, &c.Audit.Dir} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

func (c *Config) validate(v *yamlconf.Validator) {
	switch {
	case c.Host == "":
		v.Add("required", "host")
	case !hostnameRE.MatchString(c.Host) || strings.Contains(c.Host, ".."):
		v.Add(fmt.Sprintf("%q is not a valid host name (letters, digits, '.', '_', '-')", c.Host), "host")
	}
	if c.Collector.Address == "" {
		v.Add("required", "collector", "address")
	} else if err := yamlconf.HostPort(c.Collector.Address); err != nil {
		v.Add(err.Error(), "collector", "address")
	}
	for _, f := range []struct{ key, path string }{{"ca", c.Collector.CA}, {"cert", c.Collector.Cert}, {"key", c.Collector.Key}} {
		if f.path == "" {
			v.Add("required", "collector", f.key)
		} else if err := yamlconf.Readable(f.path); err != nil {
			v.Add(err.Error(), "collector", f.key)
		}
	}
	if c.Audit.Dir == "" {
		v.Add("required", "audit", "dir")
	}
	if c.Audit.MaxSegmentMB < 1 || c.Audit.MaxSegmentMB > 4096 {
		v.Add(fmt.Sprintf("%d is out of range 1..4096", c.Audit.MaxSegmentMB), "audit", "max_segment_mb")
	}
	if host, _, err := net.SplitHostPort(c.Healthz); err != nil {
		v.Add(fmt.Sprintf("%q is not host:port", c.Healthz), "healthz")
	} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		v.Add(fmt.Sprintf("%q must be a loopback address: /healthz is not authenticated", c.Healthz), "healthz")
	}
	if !slices.Contains(fileModes, c.Watchers.File.Mode) {
		v.Add(fmt.Sprintf("%q is not one of %s", c.Watchers.File.Mode, strings.Join(fileModes, ", ")), "watchers", "file", "mode")
	}
	if len(c.Rules) == 0 {
		v.Add("at least one rule is required", "rules")
	}
	seen := map[string]int{}
	for i, r := range c.Rules {
		switch {
		case r.Name == "":
			v.Add("required", "rules", i, "name")
		case !ruleNameRE.MatchString(r.Name):
			v.Add(fmt.Sprintf("%q is not a valid rule name (letters, digits, '.', '_', '-')", r.Name), "rules", i, "name")
		default:
			if j, dup := seen[r.Name]; dup {
				v.Add(fmt.Sprintf("%q is already the name of rules[%d]", r.Name, j), "rules", i, "name")
			}
			seen[r.Name] = i
		}
		if !slices.Contains(severities, r.Severity) {
			v.Add(fmt.Sprintf("%q is not one of %s", r.Severity, strings.Join(severities, ", ")), "rules", i, "severity")
		}
		if !slices.Contains(ruleTypes, r.Type) {
			v.Add(fmt.Sprintf("%q is not a supported rule type (supported: %s)", r.Type, strings.Join(ruleTypes, ", ")), "rules", i, "type")
			continue
		}
		if len(r.Paths) == 0 {
			v.Add("a file rule needs at least one path", "rules", i, "paths")
		}
		for j, p := range r.Paths {
			if !filepath.IsAbs(p) {
				v.Add(fmt.Sprintf("%q is not an absolute path", p), "rules", i, "paths", j)
				continue
			}
			if _, err := os.Stat(p); err != nil {
				v.Add(fmt.Sprintf("cannot watch %q: %v", p, yamlconf.UnwrapPathError(err)), "rules", i, "paths", j)
			}
		}
	}
}
