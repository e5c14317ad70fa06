// Package redact cuts secrets out of text — command lines above all — before an event
// is written to the audit chain or leaves the host. A command line is evidence, so only
// the secret itself is replaced: `mysql --password=hunter2 -h db` becomes
// `mysql --password=[REDACTED] -h db`, and the rest stays readable.
//
// Built-in patterns cover passwords, tokens and keys in the common forms: --flag=value
// and --flag value, NAME=value variables, HTTP Authorization headers, user:password@
// in URLs, and well-known token shapes (AWS access keys, GitHub and Slack tokens, JWTs,
// PEM private keys). Operators add their own.
package redact

import (
	"fmt"
	"regexp"
	"strings"
)

// Mask replaces each secret.
const Mask = "[REDACTED]"

// secretWords are the names under which secrets travel in flags and variables.
const secretWords = `pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|secret[-_]?key|private[-_]?key|client[-_]?secret|auth(?:[-_]?token)?|credentials?|session[-_]?id|cookie`

// Defaults are the built-in patterns. Each names the part to replace "secret".
var Defaults = []string{
	// --password=x, --api-key x, -token=x (a flag whose name contains a secret word).
	`(?i)(?:^|\s)--?[a-z0-9_-]*(?:` + secretWords + `)[a-z0-9_-]*(?:=|\s+)(?P<secret>"[^"]*"|'[^']*'|[^\s"']+)`,
	// DB_PASSWORD=x, GITHUB_TOKEN=x as arguments or env-style prefixes.
	`(?i)\b[a-z0-9_]*(?:` + secretWords + `)[a-z0-9_]*=(?P<secret>"[^"]*"|'[^']*'|[^\s"']+)`,
	// Authorization: Bearer x / Basic x, also inside -H '...'.
	`(?i)\b(?:proxy-)?authorization:\s*(?:bearer|basic|token|digest)?\s*(?P<secret>[^\s"']+)`,
	// scheme://user:password@host
	`(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]*:(?P<secret>[^@\s/]+)@`,
	// mysql -pSECRET, sshpass -p SECRET.
	`(?:^|\s|/)(?:mysql|mysqldump|mariadb|mysqladmin)\b.*?\s-p(?P<secret>[^\s]+)`,
	`(?:^|\s|/)sshpass\s+-p\s*(?P<secret>[^\s]+)`,
	// Token shapes that are secrets wherever they appear.
	`(?P<secret>\bAKIA[0-9A-Z]{16}\b)`,
	`(?P<secret>\bgh[pousr]_[A-Za-z0-9]{36,}\b)`,
	`(?P<secret>\bxox[abprs]-[A-Za-z0-9-]{10,}\b)`,
	`(?P<secret>\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)`,
	`(?s)(?P<secret>-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$))`,
}

// Redactor replaces secrets. The zero value redacts nothing; use New.
type Redactor struct {
	patterns []*regexp.Regexp
}

// New compiles the built-in patterns (unless noDefaults) and extra ones. A match of a
// pattern is replaced by Mask, or only its group named "secret" when it has one. The
// error names the pattern that does not compile.
func New(extra []string, noDefaults bool) (*Redactor, error) {
	var exprs []string
	if !noDefaults {
		exprs = append(exprs, Defaults...)
	}
	exprs = append(exprs, extra...)
	r := &Redactor{}
	for i, e := range exprs {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, fmt.Errorf("redaction pattern %d (%q): %w", i, e, err)
		}
		r.patterns = append(r.patterns, re)
	}
	return r, nil
}

// String returns s with every secret replaced, and whether anything was.
func (r *Redactor) String(s string) (string, bool) {
	if r == nil || s == "" {
		return s, false
	}
	changed := false
	for _, re := range r.patterns {
		if out, ok := replace(re, s); ok {
			s, changed = out, true
		}
	}
	return s, changed
}

// replace masks the "secret" group (or the whole match) of every match of re in s.
func replace(re *regexp.Regexp, s string) (string, bool) {
	matches := re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s, false
	}
	group := re.SubexpIndex("secret")
	var b strings.Builder
	last, changed := 0, false
	for _, m := range matches {
		start, end := m[0], m[1]
		if group > 0 {
			start, end = m[2*group], m[2*group+1]
		}
		if start < 0 || start < last || s[start:end] == Mask {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last, changed = end, true
	}
	if !changed {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}
