package procwatch

// glob is a compiled command-line pattern: '*' matches any run of bytes (including '/'
// and spaces), '?' any one byte, '\' makes the next byte literal, and every other byte
// matches itself. It matches the whole command line.
type glob []globToken

type globToken struct {
	kind byte // 0 literal, '*' or '?'
	lit  byte
}

func compileGlob(pattern string) glob {
	g := make(glob, 0, len(pattern))
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			if len(g) > 0 && g[len(g)-1].kind == '*' {
				continue // runs of '*' match as one
			}
			g = append(g, globToken{kind: '*'})
		case '?':
			g = append(g, globToken{kind: '?'})
		case '\\':
			if i+1 < len(pattern) {
				i++
			}
			g = append(g, globToken{lit: pattern[i]})
		default:
			g = append(g, globToken{lit: c})
		}
	}
	return g
}

// match reports whether g matches all of s. It runs in O(len(g)·len(s)) at worst:
// on a mismatch it only ever retries from the most recent '*'.
func (g glob) match(s string) bool {
	gi, si := 0, 0
	star, resume := -1, 0
	for si < len(s) {
		switch {
		case gi < len(g) && g[gi].kind == '*':
			star, resume = gi, si
			gi++
		case gi < len(g) && (g[gi].kind == '?' || g[gi].kind == 0 && g[gi].lit == s[si]):
			gi++
			si++
		case star >= 0:
			resume++
			gi, si = star+1, resume
		default:
			return false
		}
	}
	for gi < len(g) && g[gi].kind == '*' {
		gi++
	}
	return gi == len(g)
}
