package forensics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// MaxStatementBytes bounds one statement of a script read by a StatementReader.
const MaxStatementBytes = 64 << 20

// ScriptError reports a script that cannot be cut into statements.
type ScriptError struct {
	Offset int64 // byte offset in the script where the problem shows
	Reason string
}

func (e *ScriptError) Error() string {
	return fmt.Sprintf("script offset %d: %s", e.Offset, e.Reason)
}

// StatementReader cuts a SQL script into statements the way the duckdb shell does for
// the scripts an export writes: a statement ends at a ';' outside a '…' literal, a
// "…" identifier, a -- comment and a /* */ comment. Quotes inside literals are doubled
// (no backslash escapes). It reads in bounded memory: one statement at a time.
type StatementReader struct {
	r   *bufio.Reader
	off int64
	buf []byte
}

// NewStatementReader returns a StatementReader over r.
func NewStatementReader(r io.Reader) *StatementReader {
	return &StatementReader{r: bufio.NewReaderSize(r, 1<<20)}
}

// Next returns the next statement without its ';' (only valid until the next call), or
// io.EOF after the last. Text after the last ';' that is only blanks and comments is
// ignored; anything else there is returned as a final statement. Comments are kept in
// the statement text: DuckDB skips them.
func (s *StatementReader) Next() ([]byte, error) {
	const (
		normal = iota
		single
		double
		line
		block
	)
	state := normal
	s.buf = s.buf[:0]
	start := s.off
	meaningful := false // the statement holds something besides blanks and comments
	for {
		c, err := s.r.ReadByte()
		if errors.Is(err, io.EOF) {
			switch state {
			case single:
				return nil, &ScriptError{Offset: start, Reason: "unterminated string literal"}
			case double:
				return nil, &ScriptError{Offset: start, Reason: "unterminated quoted identifier"}
			case block:
				return nil, &ScriptError{Offset: start, Reason: "unterminated /* comment"}
			}
			if meaningful {
				return s.buf, nil
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("reading script at offset %d: %w", s.off, err)
		}
		s.off++
		if len(s.buf) >= MaxStatementBytes {
			return nil, &ScriptError{Offset: start, Reason: fmt.Sprintf("statement longer than %d bytes", MaxStatementBytes)}
		}
		switch state {
		case normal:
			switch c {
			case ';':
				if meaningful {
					return s.buf, nil
				}
				s.buf = s.buf[:0]
				start = s.off
				continue
			case '\'':
				state = single
			case '"':
				state = double
			case '-':
				if p, _ := s.r.Peek(1); len(p) == 1 && p[0] == '-' {
					state = line
				}
			case '/':
				if p, _ := s.r.Peek(1); len(p) == 1 && p[0] == '*' {
					state = block
					s.buf = append(s.buf, c, '*')
					_, _ = s.r.ReadByte()
					s.off++
					continue
				}
			}
			if state == normal || state == single || state == double {
				if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
					meaningful = true
				}
			}
		case single:
			if c == '\'' {
				state = normal
			}
		case double:
			if c == '"' {
				state = normal
			}
		case line:
			if c == '\n' {
				state = normal
			}
		case block:
			if c == '*' {
				if p, _ := s.r.Peek(1); len(p) == 1 && p[0] == '/' {
					_, _ = s.r.ReadByte()
					s.off++
					s.buf = append(s.buf, c, '/')
					state = normal
					continue
				}
			}
		}
		s.buf = append(s.buf, c)
	}
}
