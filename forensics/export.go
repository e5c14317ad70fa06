package forensics

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// Format is an export's output format.
type Format string

// Export formats.
const (
	FormatSQL     Format = "sql"     // a SQL script for the duckdb shell (the default)
	FormatNDJSON  Format = "ndjson"  // one entry per line, as JSON
	FormatParquet Format = "parquet" // the entries table as a Parquet file (ExportParquet)
)

// ParseFormat returns the Format named s.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatSQL, FormatNDJSON, FormatParquet:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q: want sql, ndjson or parquet", s)
}

// Options configure an export.
type Options struct {
	Filter  Filter
	Format  Format           // FormatSQL or FormatNDJSON; ExportParquet writes Parquet
	Version string           // the tool's version, recorded in export_meta
	Now     func() time.Time // stamps export_meta.created_at; nil means time.Now
	// RowsPerInsert bounds the rows of one INSERT statement of a SQL export (default
	// 500); the statement is also cut once it holds insertBytes of text.
	RowsPerInsert int
}

// Summary says what an export wrote.
type Summary struct {
	Hosts    int
	Entries  uint64   // rows written, stubs included
	InFilter uint64   // rows with their payload
	Notes    []string // what the source left out (see Noter)
}

// insertBytes cuts an INSERT statement once it holds this much text, so that a run of
// large payloads does not make one huge statement.
const insertBytes = 4 << 20

// ErrNoHost is returned when the host filter selects no chain of the source.
var ErrNoHost = errors.New("no such host in the source")

// Export writes the chains of src selected by opts.Filter to w, streaming: it holds one
// entry and one INSERT statement's worth of output at a time. Every entry of a selected
// chain is written, in the source's order; those the filter does not match are written
// as stubs (seq, pos and hashes, no payload) so that the links and the seq sequence can
// still be checked and a filtered-out entry is never mistaken for a missing one.
func Export(ctx context.Context, src Source, w io.Writer, opts Options) (Summary, error) {
	var sum Summary
	if opts.Format == "" {
		opts.Format = FormatSQL
	}
	if opts.Format != FormatSQL && opts.Format != FormatNDJSON {
		return sum, fmt.Errorf("exporting: format %q cannot be streamed; use ExportParquet", opts.Format)
	}
	if opts.RowsPerInsert <= 0 {
		opts.RowsPerInsert = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hosts, err := src.Hosts(ctx)
	if err != nil {
		return sum, fmt.Errorf("exporting: %w", err)
	}
	var sel []Host
	for _, h := range hosts {
		if opts.Filter.selectsHost(h) {
			sel = append(sel, h)
		}
	}
	if len(sel) == 0 && opts.Filter.Host != "" {
		return sum, fmt.Errorf("exporting: host %q: %w", opts.Filter.Host, ErrNoHost)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	x := &exporter{w: bw, opts: opts, src: src}
	if opts.Format == FormatSQL {
		x.sqlHeader(sel)
	}
	var totals []hostTotal
	for _, h := range sel {
		t, err := x.host(ctx, h)
		if err != nil {
			return x.sum, err
		}
		totals = append(totals, t)
	}
	if n, ok := src.(Noter); ok {
		x.sum.Notes = n.Notes()
	}
	if opts.Format == FormatSQL {
		x.sqlTrailer(totals, x.sum.Notes)
	}
	if err := bw.Flush(); err != nil {
		return x.sum, fmt.Errorf("exporting: writing: %w", err)
	}
	if x.werr != nil {
		return x.sum, fmt.Errorf("exporting: writing: %w", x.werr)
	}
	x.sum.Hosts = len(sel)
	return x.sum, nil
}

type hostTotal struct {
	id                string
	entries, inFilter uint64
	lastSeq           uint64
	lastHash          string
}

type exporter struct {
	w     *bufio.Writer
	werr  error
	opts  Options
	src   Source
	sum   Summary
	buf   []byte
	chain Host // the chain being written (NDJSON rows name it)

	rowsInStmt  int
	bytesInStmt int
}

func (x *exporter) write(b []byte) {
	if x.werr != nil {
		return
	}
	_, x.werr = x.w.Write(b)
}

func (x *exporter) writeString(s string) {
	if x.werr != nil {
		return
	}
	_, x.werr = x.w.WriteString(s)
}

func (x *exporter) host(ctx context.Context, h Host) (hostTotal, error) {
	t := hostTotal{id: h.ID}
	x.chain = h
	var pos uint64
	err := x.src.Entries(ctx, h.ID, func(e *Entry) error {
		pos++
		full := x.opts.Filter.Match(e)
		switch x.opts.Format {
		case FormatSQL:
			x.sqlRow(e, pos, full)
		default:
			x.ndjsonRow(e, pos, full)
		}
		if x.werr != nil {
			return fmt.Errorf("writing: %w", x.werr)
		}
		t.entries++
		if full {
			t.inFilter++
			x.sum.InFilter++
		}
		x.sum.Entries++
		t.lastSeq, t.lastHash = e.Seq, e.Hash
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("exporting host %q: %w", h.ID, err)
	}
	if x.opts.Format == FormatSQL {
		x.endInsert()
	}
	return t, nil
}

// sqlHeader writes the script's preamble: the tables, the views, the metadata and the
// hosts, in one transaction with the rows.
func (x *exporter) sqlHeader(hosts []Host) {
	f := x.opts.Filter
	x.writeString("-- Tripwire forensic export, format " + FormatVersion + " (docs/formats/forensics-export.md).\n" +
		"-- Load: duckdb case.db < export.sql; then SELECT * FROM chain_breaks; (no rows: every hash and link verifies)\n" +
		"-- Rows with in_filter = false are stubs: entries outside the export's filter, kept without payload so\n" +
		"-- that links and seqs still verify. Payloads are byte-exact; see payload_bytes for non-UTF-8 ones.\n" +
		"SET TimeZone = 'UTC';\nBEGIN TRANSACTION;\n")
	x.writeString(schemaTables)
	x.writeString(schemaViews)
	meta := [][2]string{
		{"format_version", FormatVersion},
		{"tool_version", x.opts.Version},
		{"created_at", x.opts.Now().UTC().Format(time.RFC3339Nano)},
		{"source", x.src.Describe()},
		{"filter_host", f.Host},
		{"filter_from", fmtTime(f.From)},
		{"filter_to", fmtTime(f.To)},
		{"filter_type", f.Type},
		{"filter_rule", f.Rule},
	}
	b := append(x.buf[:0], "INSERT INTO export_meta VALUES\n"...)
	for i, kv := range meta {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = append(b, '(')
		b = appendSQLOptText(b, kv[0])
		b = append(b, ", "...)
		b = appendSQLOptText(b, kv[1])
		b = append(b, ')')
	}
	b = append(b, ";\n"...)
	if len(hosts) > 0 {
		b = append(b, "INSERT INTO hosts VALUES\n"...)
		for i, h := range hosts {
			if i > 0 {
				b = append(b, ",\n"...)
			}
			b = append(b, '(')
			b = appendSQLOptText(b, h.ID)
			b = append(b, ", "...)
			b = appendSQLOptText(b, h.Name)
			b = append(b, ", "...)
			b = strconv.AppendUint(b, h.HeadSeq, 10)
			b = append(b, ", "...)
			b = appendSQLOptText(b, h.HeadHash)
			b = append(b, ", "...)
			b = appendSQLOptText(b, h.ForkOf)
			b = append(b, ", "...)
			if h.ForkOf == "" {
				b = append(b, "NULL"...)
			} else {
				b = strconv.AppendUint(b, h.ForkSeq, 10)
			}
			b = append(b, ')')
		}
		b = append(b, ";\n"...)
	}
	x.buf = b
	x.write(b)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

const insertHead = "INSERT INTO entries VALUES\n"

// sqlRow writes one entries row, opening or continuing an INSERT statement.
func (x *exporter) sqlRow(e *Entry, pos uint64, full bool) {
	b := x.buf[:0]
	if x.rowsInStmt == 0 {
		b = append(b, insertHead...)
	} else {
		b = append(b, ",\n"...)
	}
	b = append(b, '(')
	b = appendSQLOptText(b, e.HostID)
	b = append(b, ", "...)
	b = strconv.AppendUint(b, pos, 10)
	b = append(b, ", "...)
	b = strconv.AppendUint(b, e.Seq, 10)
	if full {
		b = append(b, ", "...)
		if e.Time.IsZero() {
			b = append(b, "NULL"...)
		} else {
			// TRY_CAST: a tampered payload's time out of TIMESTAMP_NS range loads as NULL.
			b = append(b, "TRY_CAST('"...)
			b = e.Time.UTC().AppendFormat(b, "2006-01-02 15:04:05.999999999")
			b = append(b, "' AS TIMESTAMP_NS)"...)
		}
		for _, s := range [...]string{e.Kind, e.Type, e.Rule, e.Severity} {
			b = append(b, ", "...)
			b = appendSQLOptText(b, s)
		}
	} else {
		b = append(b, ", NULL, NULL, NULL, NULL, NULL"...)
	}
	b = append(b, ", "...)
	b = appendSQLOptText(b, e.PrevHash)
	b = append(b, ", "...)
	b = appendSQLOptText(b, e.Hash)
	if full {
		b = append(b, ", "...)
		if ClassifyPayload(e.Payload) == EncBytes {
			b = append(b, "NULL, "...)
			b, _ = AppendSQLText(b, e.Payload)
		} else {
			b, _ = AppendSQLText(b, e.Payload)
			b = append(b, ", NULL"...)
		}
		b = append(b, ", true)"...)
	} else {
		b = append(b, ", NULL, NULL, false)"...)
	}
	x.rowsInStmt++
	x.bytesInStmt += len(b)
	x.write(b)
	if x.rowsInStmt >= x.opts.RowsPerInsert || x.bytesInStmt >= insertBytes {
		x.endInsert()
	}
	x.buf = b
}

func (x *exporter) endInsert() {
	if x.rowsInStmt > 0 {
		x.writeString(";\n")
	}
	x.rowsInStmt, x.bytesInStmt = 0, 0
}

// sqlTrailer writes the source's notes and what the exporter saw of each chain, and
// commits.
func (x *exporter) sqlTrailer(totals []hostTotal, notes []string) {
	b := x.buf[:0]
	for _, n := range notes {
		b = append(b, "INSERT INTO export_meta VALUES ('source_note', "...)
		b = appendSQLOptText(b, n)
		b = append(b, ");\n"...)
	}
	if len(totals) > 0 {
		b = append(b, "INSERT INTO export_hosts VALUES\n"...)
		for i, t := range totals {
			if i > 0 {
				b = append(b, ",\n"...)
			}
			b = append(b, '(')
			b = appendSQLOptText(b, t.id)
			b = append(b, ", "...)
			b = strconv.AppendUint(b, t.entries, 10)
			b = append(b, ", "...)
			b = strconv.AppendUint(b, t.inFilter, 10)
			if t.entries == 0 {
				b = append(b, ", NULL, NULL)"...)
				continue
			}
			b = append(b, ", "...)
			b = strconv.AppendUint(b, t.lastSeq, 10)
			b = append(b, ", "...)
			b = appendSQLOptText(b, t.lastHash)
			b = append(b, ')')
		}
		b = append(b, ";\n"...)
	}
	b = append(b, "COMMIT;\n"...)
	x.buf = b
	x.write(b)
}

// ndjsonRow writes one entry as a JSON object on one line. A payload that is valid
// UTF-8 is a JSON string (decoding it gives the exact bytes back); any other is null,
// with its bytes in payload_base64.
func (x *exporter) ndjsonRow(e *Entry, pos uint64, full bool) {
	b := append(x.buf[:0], `{"host_id":`...)
	b = appendJSONString(b, e.HostID)
	b = append(b, `,"hostname":`...)
	b = appendJSONString(b, x.chain.Name)
	if x.chain.ForkOf != "" { // only on a fork's rows: a host's rows read back NULL
		b = append(b, `,"fork_of":`...)
		b = appendJSONString(b, x.chain.ForkOf)
		b = append(b, `,"fork_seq":`...)
		b = strconv.AppendUint(b, x.chain.ForkSeq, 10)
	}
	b = append(b, `,"pos":`...)
	b = strconv.AppendUint(b, pos, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"ts":`...)
	if full && !e.Time.IsZero() {
		b = append(b, '"')
		b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
	}
	for _, kv := range [...]struct{ k, v string }{{"kind", e.Kind}, {"tripwire_type", e.Type}, {"rule_name", e.Rule}, {"severity", e.Severity}} {
		b = append(b, `,"`...)
		b = append(b, kv.k...)
		b = append(b, `":`...)
		if full && kv.v != "" {
			b = appendJSONString(b, kv.v)
		} else {
			b = append(b, "null"...)
		}
	}
	b = append(b, `,"prev_hash":`...)
	b = appendJSONString(b, e.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendJSONString(b, e.Hash)
	switch {
	case !full:
		b = append(b, `,"payload":null,"payload_base64":null`...)
	case utf8.Valid(e.Payload):
		b = append(b, `,"payload":`...)
		b = appendJSONString(b, string(e.Payload))
		b = append(b, `,"payload_base64":null`...)
	default:
		b = append(b, `,"payload":null,"payload_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.Payload)
		b = append(b, '"')
	}
	b = append(b, `,"in_filter":`...)
	b = strconv.AppendBool(b, full)
	b = append(b, "}\n"...)
	x.buf = b
	x.write(b)
}

// appendJSONString appends s as a JSON string. Valid UTF-8 round-trips exactly; an
// invalid byte is written as \ufffd (callers put non-UTF-8 payloads in base64).
func appendJSONString(b []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
