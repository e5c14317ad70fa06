// Package config loads and validates the agent's config.yaml. Loading is strict: an
// unknown key, a bad value or an unreadable file refuses to start, and every problem is
// reported at once with the file, line and key that caused it.
package config

import (
	"fmt"
	"maps"
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
	Redact   Redact   `yaml:"redact"`
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
	File    WatcherMode `yaml:"file"`    // auto, fanotify, fsnotify
	Process WatcherMode `yaml:"process"` // auto, ebpf, netlink, proc
	Network WatcherMode `yaml:"network"` // auto, ebpf, sockdiag (monitor rules; decoys need no mode)
}

// Redact configures how secrets are cut out of command lines (and what a decoy's
// caller sent) before an event is written anywhere.
type Redact struct {
	// Patterns are extra regular expressions. A match is replaced by [REDACTED]; a
	// pattern with a group named "secret" has only that group replaced.
	Patterns []string `yaml:"patterns"`
	// NoDefaults turns the built-in patterns off (passwords, tokens and keys in common
	// flag, variable, header and URL forms). They are on unless this is true.
	NoDefaults bool `yaml:"no_defaults"`
}

// WatcherMode forces a watcher mode.
type WatcherMode struct {
	Mode string `yaml:"mode"`
}

// Rule is one tripwire. Which keys apply depends on Type; a key that does not apply to
// the rule's type is refused.
type Rule struct {
	Name     string `yaml:"name" json:"name"`
	Type     string `yaml:"type" json:"type"` // file, process or network
	Severity string `yaml:"severity" json:"severity"`

	// Paths: file rules watch these files and directories (recursively); process rules
	// match executables at these absolute paths.
	Paths []string `yaml:"paths" json:"paths,omitempty"`

	// Process rules.
	Names        []string `yaml:"names" json:"names,omitempty"`                 // program names
	Cmdline      []string `yaml:"cmdline" json:"cmdline,omitempty"`             // globs over the whole command line
	CmdlineRegex []string `yaml:"cmdline_regex" json:"cmdline_regex,omitempty"` // regular expressions over it
	// MatchContent also matches a renamed or copied binary whose content equals a
	// watched program's.
	MatchContent bool `yaml:"match_content" json:"match_content,omitempty"`

	// Network rules.
	Ports     []int  `yaml:"ports" json:"ports,omitempty"`
	Mode      string `yaml:"mode" json:"mode,omitempty"`           // decoy or monitor (default)
	Direction string `yaml:"direction" json:"direction,omitempty"` // monitor: inbound (default), outbound, both
	Address   string `yaml:"address" json:"address,omitempty"`     // decoy: the address to listen on; default all

	// Allow lists the actors whose hits are expected (a backup job reading
	// /etc/shadow): an event from one of them is counted, not raised.
	Allow Allow `yaml:"allow" json:"allow,omitzero"`

	cmdlineRE []*regexp.Regexp
}

// Allow matches an event's actor. An event is allowed when any one list matches it.
type Allow struct {
	Exes      []string `yaml:"exes" json:"exes,omitempty"`             // executable paths (globs)
	ExeSHA256 []string `yaml:"exe_sha256" json:"exe_sha256,omitempty"` // executable content hashes, hex
	Parents   []string `yaml:"parents" json:"parents,omitempty"`       // parent executable paths (globs)
	Users     []string `yaml:"users" json:"users,omitempty"`           // user names or numeric uids
}

// Empty says the allowlist allows nothing.
func (a Allow) Empty() bool {
	return len(a.Exes)+len(a.ExeSHA256)+len(a.Parents)+len(a.Users) == 0
}

// CmdlineRegexps returns the rule's compiled CmdlineRegex (valid after Load or
// LoadRules).
func (r Rule) CmdlineRegexps() []*regexp.Regexp { return r.cmdlineRE }

// Defaults.
const (
	DefaultHealthz      = "127.0.0.1:9100"
	DefaultMaxSegmentMB = 64
)

// Rule types, network rule modes and directions.
const (
	TypeFile    = "file"
	TypeProcess = "process"
	TypeNetwork = "network"

	NetModeDecoy   = "decoy"
	NetModeMonitor = "monitor"

	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
	DirectionBoth     = "both"
)

var (
	ruleTypes    = []string{TypeFile, TypeProcess, TypeNetwork}
	severities   = []string{"INFO", "WARN", "CRITICAL"}
	fileModes    = []string{"auto", "fanotify", "fsnotify"}
	processModes = []string{"auto", "ebpf", "netlink", "proc"}
	networkModes = []string{"auto", "ebpf", "sockdiag"}
	netModes     = []string{NetModeDecoy, NetModeMonitor}
	directions   = []string{DirectionInbound, DirectionOutbound, DirectionBoth}
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hostnameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	ruleNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
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
	for _, m := range []*string{&c.Watchers.File.Mode, &c.Watchers.Process.Mode, &c.Watchers.Network.Mode} {
		if *m == "" {
			*m = "auto"
		}
	}
	for i := range c.Rules {
		c.Rules[i].applyDefaults()
	}
}

func (r *Rule) applyDefaults() {
	if r.Type != TypeNetwork {
		return
	}
	if r.Mode == "" {
		r.Mode = NetModeMonitor
	}
	if r.Direction == "" && r.Mode == NetModeMonitor {
		r.Direction = DirectionInbound
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
	for _, w := range []struct {
		key, mode string
		modes     []string
	}{{"file", c.Watchers.File.Mode, fileModes}, {"process", c.Watchers.Process.Mode, processModes}, {"network", c.Watchers.Network.Mode, networkModes}} {
		if !slices.Contains(w.modes, w.mode) {
			v.Add(fmt.Sprintf("%q is not one of %s", w.mode, strings.Join(w.modes, ", ")), "watchers", w.key, "mode")
		}
	}
	for i, p := range c.Redact.Patterns {
		if _, err := regexp.Compile(p); err != nil {
			v.Add(fmt.Sprintf("not a regular expression: %v", err), "redact", "patterns", i)
		}
	}
	if len(c.Rules) == 0 {
		v.Add("at least one rule is required", "rules")
	}
	validateRules(v, c.Rules, func(i int) string { return "" }, true)
}

// validateRules checks rules as found under the top-level "rules" key; scope names the
// host a rule applies to ("" for all), so that names need only be unique per scope.
// local says the rules are for this machine, whose watched files must then exist.
func validateRules(v *yamlconf.Validator, rules []Rule, scope func(i int) string, local bool) {
	seen := map[[2]string]int{}
	for i := range rules {
		r := &rules[i]
		switch {
		case r.Name == "":
			v.Add("required", "rules", i, "name")
		case !ruleNameRE.MatchString(r.Name):
			v.Add(fmt.Sprintf("%q is not a valid rule name (letters, digits, '.', '_', '-')", r.Name), "rules", i, "name")
		default:
			key := [2]string{scope(i), r.Name}
			if j, dup := seen[key]; dup {
				v.Add(fmt.Sprintf("%q is already the name of rules[%d]", r.Name, j), "rules", i, "name")
			}
			seen[key] = i
		}
		if !slices.Contains(severities, r.Severity) {
			v.Add(fmt.Sprintf("%q is not one of %s", r.Severity, strings.Join(severities, ", ")), "rules", i, "severity")
		}
		switch r.Type {
		case TypeFile:
			r.validateFile(v, i, local)
		case TypeProcess:
			r.validateProcess(v, i)
		case TypeNetwork:
			r.validateNetwork(v, i)
		default:
			v.Add(fmt.Sprintf("%q is not a supported rule type (supported: %s)", r.Type, strings.Join(ruleTypes, ", ")), "rules", i, "type")
			continue
		}
		r.Allow.validate(v, i)
	}
}

// refuseKeys reports each key set on a rule of a type it does not apply to.
func refuseKeys(v *yamlconf.Validator, i int, typ string, set map[string]bool) {
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if set[k] {
			v.Add(fmt.Sprintf("does not apply to a %s rule", typ), "rules", i, k)
		}
	}
}

func (r *Rule) validateFile(v *yamlconf.Validator, i int, local bool) {
	refuseKeys(v, i, TypeFile, map[string]bool{
		"names": len(r.Names) > 0, "cmdline": len(r.Cmdline) > 0, "cmdline_regex": len(r.CmdlineRegex) > 0,
		"match_content": r.MatchContent, "ports": len(r.Ports) > 0, "mode": r.Mode != "", "direction": r.Direction != "", "address": r.Address != "",
	})
	if len(r.Paths) == 0 {
		v.Add("a file rule needs at least one path", "rules", i, "paths")
	}
	for j, p := range r.Paths {
		if !filepath.IsAbs(p) {
			v.Add(fmt.Sprintf("%q is not an absolute path", p), "rules", i, "paths", j)
			continue
		}
		if _, err := os.Stat(p); local && err != nil {
			v.Add(fmt.Sprintf("cannot watch %q: %v", p, yamlconf.UnwrapPathError(err)), "rules", i, "paths", j)
		}
	}
}

func (r *Rule) validateProcess(v *yamlconf.Validator, i int) {
	refuseKeys(v, i, TypeProcess, map[string]bool{
		"ports": len(r.Ports) > 0, "mode": r.Mode != "", "direction": r.Direction != "", "address": r.Address != "",
	})
	if len(r.Names)+len(r.Paths)+len(r.Cmdline)+len(r.CmdlineRegex) == 0 {
		v.Add("a process rule needs names, paths, cmdline or cmdline_regex", "rules", i)
	}
	for j, n := range r.Names {
		if n == "" || strings.Contains(n, "/") {
			v.Add(fmt.Sprintf("%q is not a program name (no '/'; use paths for a path)", n), "rules", i, "names", j)
		}
	}
	for j, p := range r.Paths {
		if !filepath.IsAbs(p) {
			v.Add(fmt.Sprintf("%q is not an absolute path", p), "rules", i, "paths", j)
		}
	}
	for j, g := range r.Cmdline {
		if g == "" {
			v.Add("an empty glob matches nothing", "rules", i, "cmdline", j)
		}
	}
	r.cmdlineRE = r.cmdlineRE[:0]
	for j, expr := range r.CmdlineRegex {
		re, err := regexp.Compile(expr)
		if err != nil {
			v.Add(fmt.Sprintf("not a regular expression: %v", err), "rules", i, "cmdline_regex", j)
			continue
		}
		r.cmdlineRE = append(r.cmdlineRE, re)
	}
	if r.MatchContent && len(r.Names)+len(r.Paths) == 0 {
		v.Add("match_content needs names or paths whose content to match", "rules", i, "match_content")
	}
}

func (r *Rule) validateNetwork(v *yamlconf.Validator, i int) {
	refuseKeys(v, i, TypeNetwork, map[string]bool{
		"paths": len(r.Paths) > 0, "names": len(r.Names) > 0, "cmdline": len(r.Cmdline) > 0,
		"cmdline_regex": len(r.CmdlineRegex) > 0, "match_content": r.MatchContent,
	})
	if len(r.Ports) == 0 {
		v.Add("a network rule needs at least one port", "rules", i, "ports")
	}
	for j, p := range r.Ports {
		if p < 1 || p > 65535 {
			v.Add(fmt.Sprintf("%d is not a TCP port (1..65535)", p), "rules", i, "ports", j)
		}
	}
	if !slices.Contains(netModes, r.Mode) {
		v.Add(fmt.Sprintf("%q is not one of %s", r.Mode, strings.Join(netModes, ", ")), "rules", i, "mode")
		return
	}
	switch r.Mode {
	case NetModeDecoy:
		if r.Direction != "" && r.Direction != DirectionInbound {
			v.Add("a decoy only receives connections: direction must be inbound or absent", "rules", i, "direction")
		}
		if r.Address != "" && net.ParseIP(r.Address) == nil {
			v.Add(fmt.Sprintf("%q is not an IP address", r.Address), "rules", i, "address")
		}
	case NetModeMonitor:
		if !slices.Contains(directions, r.Direction) {
			v.Add(fmt.Sprintf("%q is not one of %s", r.Direction, strings.Join(directions, ", ")), "rules", i, "direction")
		}
		if r.Address != "" {
			v.Add("only a decoy listens on an address", "rules", i, "address")
		}
	}
}

func (a Allow) validate(v *yamlconf.Validator, i int) {
	for j, h := range a.ExeSHA256 {
		if !sha256RE.MatchString(h) {
			v.Add(fmt.Sprintf("%q is not a SHA-256 in lowercase hex", h), "rules", i, "allow", "exe_sha256", j)
		}
	}
	for _, l := range []struct {
		key   string
		globs []string
	}{{"exes", a.Exes}, {"parents", a.Parents}} {
		for j, g := range l.globs {
			if _, err := filepath.Match(g, ""); err != nil || !filepath.IsAbs(g) {
				v.Add(fmt.Sprintf("%q is not an absolute path or glob", g), "rules", i, "allow", l.key, j)
			}
		}
	}
	for j, u := range a.Users {
		if u == "" {
			v.Add("empty user", "rules", i, "allow", "users", j)
		}
	}
}
