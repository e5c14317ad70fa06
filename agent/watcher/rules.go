package watcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// ruleRef is the part of a rule an event carries.
type ruleRef struct {
	Name, Severity string
}

// target is one watched path and the rules naming it.
type target struct {
	path  string // cleaned absolute path, as configured
	rules []ruleRef
}

// buildTargets validates rules and groups them by path, reporting every problem at once.
func buildTargets(rules []FileRule) ([]*target, error) {
	var errs []error
	byPath := map[string]*target{}
	var out []*target
	for i, r := range rules {
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("file rule %d: name is required", i))
		}
		if len(r.Paths) == 0 {
			errs = append(errs, fmt.Errorf("file rule %q: at least one path is required", r.Name))
		}
		for _, p := range r.Paths {
			if !filepath.IsAbs(p) {
				errs = append(errs, fmt.Errorf("file rule %q: path %q is not absolute", r.Name, p))
				continue
			}
			p = filepath.Clean(p)
			t := byPath[p]
			if t == nil {
				t = &target{path: p}
				byPath[p] = t
				out = append(out, t)
			}
			ref := ruleRef{Name: r.Name, Severity: r.Severity}
			if !slices.Contains(t.rules, ref) {
				t.rules = append(t.rules, ref)
			}
		}
	}
	if len(rules) == 0 {
		errs = append(errs, errors.New("no file rules"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("validating file rules: %w", err)
	}
	return out, nil
}

// resolved is where a target's path leads now.
type resolved struct {
	real  string // symlinks evaluated
	isDir bool
	info  os.FileInfo
}

// resolve follows a target's symlinks to the object to watch.
func resolve(path string) (resolved, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return resolved{}, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return resolved{}, err
	}
	return resolved{real: real, isDir: fi.IsDir(), info: fi}, nil
}

// matcher maps event paths to the rules that cover them: a watched path itself, or
// anything under a watched directory.
type matcher struct {
	exact    map[string][]ruleRef // real path of a watched file or directory
	children map[string][]ruleRef // real path of a watched directory
}

func newMatcher() *matcher {
	return &matcher{exact: map[string][]ruleRef{}, children: map[string][]ruleRef{}}
}

func (m *matcher) add(real string, isDir bool, rules []ruleRef) {
	m.exact[real] = appendRules(m.exact[real], rules)
	if isDir {
		m.children[real] = appendRules(m.children[real], rules)
	}
}

// match returns the rules covering path, each once.
func (m *matcher) match(path string) []ruleRef {
	return appendRules(appendRules(nil, m.exact[path]), m.under(path))
}

// under returns the rules of the watched directories that path is under, each once.
func (m *matcher) under(path string) []ruleRef {
	var out []ruleRef
	for p := path; ; {
		dir := filepath.Dir(p)
		if dir == p {
			return out
		}
		out = appendRules(out, m.children[dir])
		p = dir
	}
}

// appendRules appends the rules of add not yet in dst (by name).
func appendRules(dst, add []ruleRef) []ruleRef {
	for _, r := range add {
		if !slices.ContainsFunc(dst, func(d ruleRef) bool { return d.Name == r.Name }) {
			dst = append(dst, r)
		}
	}
	return dst
}
