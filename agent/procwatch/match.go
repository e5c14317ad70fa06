package procwatch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// standardPath is where Names are looked up to find the executables they stand for.
var standardPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// commLen is the longest task name the kernel keeps (TASK_COMM_LEN - 1).
const commLen = 15

// execInfo is what matching looks at for one exec.
type execInfo struct {
	// Filename is the path execve was given, made absolute against the working
	// directory when that is known; "" when the mode does not see it (or it was cut).
	Filename string
	// FilenameReal is Filename with symlinks resolved, "" if that failed.
	FilenameReal string
	// Exe is the executable's absolute path as /proc or the kernel gave it.
	Exe     string
	Comm    string
	Cmdline string
	// HaveCmdline is false when the command line is unknown: cmdline rules cannot
	// match then.
	HaveCmdline bool
	// SHA256 is the executable's content hash (hex), "" when not computed.
	SHA256 string
}

// rule is a Rule prepared for matching.
type rule struct {
	name, severity string
	names          map[string]bool // program names
	comms          map[string]bool // names cut to the kernel's comm length
	exes           map[string]bool // what the names resolve to through standardPath, real paths
	paths          map[string]bool // Paths as configured and with symlinks resolved
	globs          []glob
	regexes        []*regexp.Regexp
	hashes         map[string]bool // with MatchContent: content of the names' exes and paths
}

// matcher holds the prepared rules. It is read-only after newMatcher and safe for
// concurrent use.
type matcher struct {
	rules []*rule
	// hashing says some rule matches by content, so every exec is hashed.
	hashing bool
}

// newMatcher validates rules, reporting every problem at once, and prepares them:
// names are looked up in path, paths resolved, and, for MatchContent rules, the
// executables they lead to are hashed.
func newMatcher(rules []Rule, path []string) (*matcher, error) {
	var errs []error
	if len(rules) == 0 {
		errs = append(errs, errors.New("no process rules"))
	}
	m := &matcher{}
	for i, r := range rules {
		cr, err := prepare(i, r, path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.rules = append(m.rules, cr)
		m.hashing = m.hashing || r.MatchContent
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("validating process rules: %w", err)
	}
	return m, nil
}

func prepare(i int, r Rule, path []string) (*rule, error) {
	var errs []error
	if r.Name == "" {
		errs = append(errs, fmt.Errorf("process rule %d: name is required", i))
	}
	if len(r.Names)+len(r.Paths)+len(r.Cmdline)+len(r.CmdlineRegex) == 0 {
		errs = append(errs, fmt.Errorf("process rule %q: at least one of names, paths, cmdline or cmdline_regex is required", r.Name))
	}
	if r.MatchContent && len(r.Names)+len(r.Paths) == 0 {
		errs = append(errs, fmt.Errorf("process rule %q: match_content needs names or paths to take the content from", r.Name))
	}
	cr := &rule{
		name: r.Name, severity: r.Severity,
		names: map[string]bool{}, comms: map[string]bool{}, exes: map[string]bool{},
		paths: map[string]bool{}, hashes: map[string]bool{},
	}
	var content []string // executables whose hash a MatchContent rule matches
	for _, n := range r.Names {
		if n == "" || strings.ContainsRune(n, '/') {
			errs = append(errs, fmt.Errorf("process rule %q: name %q is not a program name (no '/', not empty)", r.Name, n))
			continue
		}
		cr.names[n] = true
		cr.comms[n[:min(len(n), commLen)]] = true
		for _, dir := range path {
			if real, ok := executable(filepath.Join(dir, n)); ok {
				cr.exes[real] = true
				content = append(content, real)
			}
		}
	}
	for _, p := range r.Paths {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("process rule %q: path %q is not absolute", r.Name, p))
			continue
		}
		p = filepath.Clean(p)
		cr.paths[p] = true
		if real, err := filepath.EvalSymlinks(p); err == nil {
			cr.paths[real] = true
			content = append(content, real)
		}
	}
	for _, g := range r.Cmdline {
		cr.globs = append(cr.globs, compileGlob(g))
	}
	for j, re := range r.CmdlineRegex {
		if re == nil {
			errs = append(errs, fmt.Errorf("process rule %q: cmdline_regex %d is nil", r.Name, j))
			continue
		}
		cr.regexes = append(cr.regexes, re)
	}
	if r.MatchContent {
		slices.Sort(content)
		for _, exe := range slices.Compact(content) {
			sum, err := hashPath(exe)
			if err != nil {
				errs = append(errs, fmt.Errorf("process rule %q: hashing %s for match_content: %w", r.Name, exe, err))
				continue
			}
			cr.hashes[sum] = true
		}
		if len(content) == 0 {
			errs = append(errs, fmt.Errorf("process rule %q: match_content: none of its names or paths leads to an executable", r.Name))
		}
	}
	return cr, errors.Join(errs...)
}

// executable returns the real path of p if it is an executable regular file.
func executable(p string) (string, bool) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", false
	}
	fi, err := os.Stat(real)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", false
	}
	return real, true
}

// match returns the rules an exec matches, in configuration order.
func (m *matcher) match(x *execInfo) []*rule {
	var out []*rule
	for _, r := range m.rules {
		if r.matches(x) {
			out = append(out, r)
		}
	}
	return out
}

func (r *rule) matches(x *execInfo) bool {
	return r.matchesName(x) || r.matchesPath(x) || r.matchesCmdline(x) || (x.SHA256 != "" && r.hashes[x.SHA256])
}

func (r *rule) matchesName(x *execInfo) bool {
	if len(r.names) == 0 {
		return false
	}
	exe := trimDeleted(x.Exe)
	switch {
	case x.Filename != "" && r.names[filepath.Base(x.Filename)]:
		return true
	case exe != "" && (r.names[filepath.Base(exe)] || r.exes[exe]):
		return true
	case x.Filename == "" && x.Comm != "":
		// The file name is unknown (netlink, proc): the kernel's task name is set
		// from it at exec, cut to 15 bytes.
		return r.comms[x.Comm]
	}
	return false
}

func (r *rule) matchesPath(x *execInfo) bool {
	if len(r.paths) == 0 {
		return false
	}
	for _, p := range []string{x.Filename, x.FilenameReal, trimDeleted(x.Exe)} {
		if p != "" && r.paths[p] {
			return true
		}
	}
	return false
}

func (r *rule) matchesCmdline(x *execInfo) bool {
	if !x.HaveCmdline {
		return false
	}
	return slices.ContainsFunc(r.globs, func(g glob) bool { return g.match(x.Cmdline) }) ||
		slices.ContainsFunc(r.regexes, func(re *regexp.Regexp) bool { return re.MatchString(x.Cmdline) })
}

// trimDeleted drops the " (deleted)" the kernel appends to an unlinked executable.
func trimDeleted(exe string) string {
	return strings.TrimSuffix(exe, " (deleted)")
}
