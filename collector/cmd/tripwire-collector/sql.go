package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/tripwire-project/tripwire/storage"
)

// sqlCmd runs one read-only SQL statement through the API (POST /api/v1/sql) and prints
// the result as a table, or as the API's NDJSON lines.
func sqlCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sql", flag.ContinueOnError)
	client := apiFlags(fs, "sql")
	format := fs.String("format", "table", "table or ndjson (the API's lines, as they come)")
	maxRows := fs.Int("max-rows", 1000, "at most this many rows (the API allows up to 100000)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() != 1 {
		return usageError(`sql: one query is required, e.g. tripwire-collector sql --config collector.yaml "SELECT count(*) FROM entries"`)
	}
	if *format != "table" && *format != "ndjson" {
		return usageError(fmt.Sprintf("sql: --format %q is not table or ndjson", *format))
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/sql", map[string]any{"query": fs.Arg(0), "max_rows": *maxRows})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	if *format == "ndjson" {
		return copyLines(sc, stdout)
	}
	return printTable(sc, stdout)
}

// resultLine is a line of the API's NDJSON other than a row.
type resultLine struct {
	Columns []storage.Column `json:"columns"`
	End     *struct {
		Rows      int  `json:"rows"`
		Truncated bool `json:"truncated"`
	} `json:"end"`
	Error string `json:"error"`
}

// copyLines prints each line as it comes; an error line also fails the command.
func copyLines(sc *bufio.Scanner, out io.Writer) error {
	ended := false
	for sc.Scan() {
		fmt.Fprintln(out, sc.Text())
		var l resultLine
		if !strings.HasPrefix(sc.Text(), "[") && json.Unmarshal(sc.Bytes(), &l) == nil {
			if l.Error != "" {
				return fmt.Errorf("query failed: %s", l.Error)
			}
			ended = ended || l.End != nil
		}
	}
	return endOfResult(sc, ended)
}

// printTable reads the whole result and prints it as aligned columns, then the count.
func printTable(sc *bufio.Scanner, out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '[' {
			var row []any
			if err := json.Unmarshal(line, &row); err != nil {
				return fmt.Errorf("decoding a row: %w", err)
			}
			cells := make([]string, len(row))
			for i, v := range row {
				cells[i] = cell(v)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
			continue
		}
		var l resultLine
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("decoding the result: %w", err)
		}
		switch {
		case l.Error != "":
			tw.Flush()
			return fmt.Errorf("query failed: %s", l.Error)
		case l.End != nil:
			if err := tw.Flush(); err != nil {
				return err
			}
			more := ""
			if l.End.Truncated {
				more = ", truncated: raise --max-rows or narrow the query"
			}
			fmt.Fprintf(out, "(%d rows%s)\n", l.End.Rows, more)
			return nil
		case l.Columns != nil:
			names := make([]string, len(l.Columns))
			for i, c := range l.Columns {
				names[i] = c.Name
			}
			fmt.Fprintln(tw, strings.Join(names, "\t"))
		}
	}
	return endOfResult(sc, false)
}

// endOfResult reports a stream that ended without its last line.
func endOfResult(sc *bufio.Scanner, ended bool) error {
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the result: %w", err)
	}
	if !ended {
		return errors.New("the result ended before its last line: the collector stopped or the connection broke")
	}
	return nil
}

// cell renders a value for the table: text as it is, NULL for null, JSON otherwise.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return strings.NewReplacer("\t", `\t`, "\n", `\n`).Replace(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
