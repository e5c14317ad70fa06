package forensics

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// decodeSQLText is the inverse of AppendSQLText, for the three shapes it writes.
func decodeSQLText(expr string) ([]byte, bool) {
	switch {
	case strings.HasPrefix(expr, "decode(from_base64('") && strings.HasSuffix(expr, "'))"):
		b, err := base64.StdEncoding.DecodeString(expr[len("decode(from_base64('") : len(expr)-3])
		return b, err == nil
	case strings.HasPrefix(expr, "from_base64('") && strings.HasSuffix(expr, "')"):
		b, err := base64.StdEncoding.DecodeString(expr[len("from_base64('") : len(expr)-2])
		return b, err == nil
	case len(expr) >= 2 && expr[0] == '\'' && expr[len(expr)-1] == '\'':
		inner := expr[1 : len(expr)-1]
		if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
			return nil, false
		}
		return []byte(strings.ReplaceAll(inner, "''", "'")), true
	}
	return nil, false
}

// FuzzSQLText: whatever the bytes, the SQL expression holds no control character and
// no invalid UTF-8, is one statement to the shell's splitter, decodes back to the same
// bytes, and DuckDB evaluates it to the same bytes.
func FuzzSQLText(f *testing.F) {
	for _, s := range hostileStrings() {
		f.Add([]byte(s))
	}
	f.Add([]byte{0})
	f.Add([]byte(`{"seq":1,"ts":"2026-11-25T06:00:00Z","kind":"event"}`))
	var (
		once  sync.Once
		db    *sql.DB
		dbErr error
	)
	f.Cleanup(func() {
		if db != nil {
			_ = db.Close()
		}
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		expr, enc := AppendSQLText(nil, b)
		if !utf8.Valid(expr) {
			t.Fatalf("expression is not valid UTF-8: %q", expr)
		}
		for _, c := range expr {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("expression holds control byte %#x: %q", c, expr)
			}
		}
		got, ok := decodeSQLText(string(expr))
		if !ok || !bytes.Equal(got, b) {
			t.Fatalf("expression %q decodes to %q, want %q", expr, got, b)
		}
		sr := NewStatementReader(strings.NewReader("SELECT " + string(expr) + ";\nSELECT 2;\n"))
		st, err := sr.Next()
		if err != nil || string(st) != "SELECT "+string(expr) {
			t.Fatalf("the splitter cut %q into %q (%v)", expr, st, err)
		}
		once.Do(func() { db, dbErr = OpenDuckDB("") })
		if dbErr != nil {
			t.Fatal(dbErr)
		}
		q := "SELECT encode(" + string(expr) + ")"
		if enc == EncBytes {
			q = "SELECT " + string(expr)
		}
		var back []byte
		if err := db.QueryRow(q).Scan(&back); err != nil {
			t.Fatalf("DuckDB refused %q: %v", expr, err)
		}
		if !bytes.Equal(back, b) && !(len(back) == 0 && len(b) == 0) {
			t.Fatalf("DuckDB evaluated %q to %q, want %q", expr, back, b)
		}
	})
}

// FuzzStatementReader: any script is cut without panic into statements that are
// pieces of it, in order.
func FuzzStatementReader(f *testing.F) {
	f.Add("SELECT 1; SELECT 'a;b'; -- c;\nSELECT \"x;\"; /* ; */ SELECT 2")
	f.Add("INSERT INTO t VALUES ('it''s;');\n")
	f.Add("'unterminated")
	f.Add("/* open")
	f.Fuzz(func(t *testing.T, script string) {
		sr := NewStatementReader(strings.NewReader(script))
		rest := script
		for range len(script) + 1 {
			st, err := sr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			var se *ScriptError
			if errors.As(err, &se) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			i := strings.Index(rest, string(st))
			if i < 0 {
				t.Fatalf("statement %q is not in the rest of the script %q", st, rest)
			}
			rest = rest[i+len(st):]
		}
		t.Fatal("more statements than bytes")
	})
}
