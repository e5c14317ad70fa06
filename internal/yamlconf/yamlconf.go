// Package yamlconf is the strict YAML loading shared by the agent's and the collector's
// config files: unknown keys refused, and every problem reported at once with the file,
// line and dotted key that caused it (e.g. "config.yaml:9: rules[1].severity: ...").
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config file, located by line and key.
type Problem struct {
	File string
	Line int
	Key  string // dotted path, e.g. rules[0].severity
	Msg  string
}

func (p Problem) Error() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Key == "" {
		return loc + ": " + p.Msg
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Key, p.Msg)
}

// Error lists every problem found in one config file.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

var (
	yamlLineRE   = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`field (\S+) not found in type (\S+)`)
)

// Decode strictly decodes the YAML document data into out (unknown keys are errors) and
// returns the document's node tree, which a Validator uses to locate problems. name is
// the file name used in messages.
func Decode(name string, data []byte, out any) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Problems: problems(name, nil, err)}
	}
	if root.Kind == 0 {
		return nil, &Error{Problems: []Problem{{File: name, Msg: "config is empty"}}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Problems: []Problem{{File: name, Msg: "config is empty"}}}
		}
		return nil, &Error{Problems: problems(name, &root, err)}
	}
	return &root, nil
}

// problems turns yaml.v3's errors ("line 3: field foo not found in type config.Rule")
// into located problems.
func problems(file string, root *yaml.Node, err error) []Problem {
	var te *yaml.TypeError
	var lines []string
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		lines = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]Problem, 0, len(lines))
	for _, l := range lines {
		p := Problem{File: file, Msg: l}
		if m := yamlLineRE.FindStringSubmatch(l); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Msg = m[2]
			if u := unknownField.FindStringSubmatch(m[2]); u != nil {
				p.Key = u[1]
				if path := keyPathAt(root, p.Line, u[1]); path != nil {
					p.Key = KeyString(path)
				}
				p.Msg = "unknown key"
			}
		}
		out = append(out, p)
	}
	return out
}

// Validator collects located problems while a component validates its decoded config.
type Validator struct {
	file     string
	root     *yaml.Node
	problems []Problem
}

// NewValidator returns a Validator for the document root decoded from file.
func NewValidator(file string, root *yaml.Node) *Validator {
	return &Validator{file: file, root: root}
}

// Add records a problem at the key path: map keys as strings, sequence indexes as ints,
// e.g. Add(msg, "rules", 0, "severity").
func (v *Validator) Add(msg string, path ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Line: lineOf(v.root, path...), Key: KeyString(path), Msg: msg})
}

// Err returns every problem recorded as one *Error, or nil.
func (v *Validator) Err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &Error{Problems: v.problems}
}

// Readable checks that path can be opened for reading.
func Readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %v", path, UnwrapPathError(err))
	}
	return f.Close()
}

// HostPort checks that addr is host:port with a port.
func HostPort(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("%q is not host:port", addr)
	}
	return nil
}

// UnwrapPathError returns the cause inside an *os.PathError, so that messages name the
// path once.
func UnwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// lineOf finds the line of the node at path in a decoded document, or of the deepest
// ancestor that exists.
func lineOf(root *yaml.Node, path ...any) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, step := range path {
		var next *yaml.Node
		switch s := step.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						line = n.Content[i].Line
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && s < len(n.Content) {
				next = n.Content[s]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// keyPathAt finds the mapping key named key on line and returns its path from the root.
func keyPathAt(n *yaml.Node, line int, key string) []any {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			return keyPathAt(n.Content[0], line, key)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Value == key && k.Line == line {
				return []any{k.Value}
			}
			if sub := keyPathAt(n.Content[i+1], line, key); sub != nil {
				return append([]any{k.Value}, sub...)
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if sub := keyPathAt(c, line, key); sub != nil {
				return append([]any{i}, sub...)
			}
		}
	}
	return nil
}

// KeyString renders a key path as rules[0].severity.
func KeyString(path []any) string {
	var b strings.Builder
	for _, step := range path {
		switch s := step.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s)
		case int:
			fmt.Fprintf(&b, "[%d]", s)
		}
	}
	return b.String()
}
