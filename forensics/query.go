package forensics

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// RunQueries loads the export at path into a scratch DuckDB in tmpDir, sets each
// (name, value) of vars with SET VARIABLE (read in SQL with getvariable('name')), runs
// the statements of script one by one and prints the rows of each as a table on w.
// Cells are cut at maxWidth characters (0: never) and control characters and invalid
// UTF-8 are escaped, so that hostile payloads cannot drive the terminal.
func RunQueries(ctx context.Context, path, tmpDir string, vars [][2]string, script io.Reader, w io.Writer, maxWidth int) error {
	db, cleanup, err := openScratch(tmpDir)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := LoadExport(ctx, db, path); err != nil {
		return err
	}
	for _, v := range vars {
		if !identRE.MatchString(v[0]) {
			return fmt.Errorf("setting variable %q: not an identifier", v[0])
		}
		if _, err := db.ExecContext(ctx, "SET VARIABLE "+v[0]+" = "+string(AppendSQLString(nil, []byte(v[1])))); err != nil {
			return fmt.Errorf("setting variable %s: %w", v[0], err)
		}
	}
	sr := NewStatementReader(script)
	for n := 1; ; n++ {
		stmt, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading queries: %w", err)
		}
		if err := printQuery(ctx, db, string(stmt), w, maxWidth); err != nil {
			return fmt.Errorf("query %d: %w", n, err)
		}
	}
}

func printQuery(ctx context.Context, db *sql.DB, q string, w io.Writer, maxWidth int) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	if len(cols) == 0 || (len(cols) == 1 && cols[0] == "Success") {
		return rows.Err()
	}
	table := [][]string{cols}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = cell(v, maxWidth)
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	writeTable(w, table)
	fmt.Fprintf(w, "(%d rows)\n\n", len(table)-1)
	return nil
}

// cell renders a value for the terminal.
func cell(v any, maxWidth int) string {
	var s string
	switch x := v.(type) {
	case nil:
		s = "NULL"
	case []byte:
		s = `\x` + hex.EncodeToString(x)
	case string:
		s = x
	case time.Time:
		s = x.UTC().Format("2006-01-02 15:04:05.999999999")
	default:
		s = fmt.Sprint(x)
	}
	s = escapeTerminal(s)
	if maxWidth > 0 && utf8.RuneCountInString(s) > maxWidth {
		r := []rune(s)
		s = string(r[:maxWidth-1]) + "…"
	}
	return s
}

// escapeTerminal escapes control characters (C0, DEL, C1) and invalid UTF-8.
func escapeTerminal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func writeTable(w io.Writer, table [][]string) {
	widths := make([]int, len(table[0]))
	for _, row := range table {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	line := func(row []string) {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(table[0])
	sep := make([]string, len(widths))
	for i, wd := range widths {
		sep[i] = strings.Repeat("-", wd)
	}
	fmt.Fprintln(w, strings.Join(sep, "-+-"))
	for _, row := range table[1:] {
		line(row)
	}
}
