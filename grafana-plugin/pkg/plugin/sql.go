package plugin

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// sqlMaxRows caps the rows of one sql query.
const sqlMaxRows = 10000

// sqlTimeLayout renders macro times: RFC 3339's date and time joined by a space (which
// RFC 3339 allows), without a zone. DuckDB casts it to TIMESTAMP, TIMESTAMP_NS and (in
// the store's UTC session) TIMESTAMPTZ, and ClickHouse 18.16 parses exactly this form
// into a DateTime; neither accepts the other's zone suffixes. Times are UTC.
const sqlTimeLayout = "2006-01-02 15:04:05"

const timeFilterMacro = "$__timeFilter("

// ExpandMacros replaces the sql macros: $__timeFilter(expr) with expr >= 'from' AND
// expr < 'to' (expr may hold parentheses, e.g. ClickHouse's
// toDateTime(intDiv(ts, 1000000000))), $__timeFrom() and $__timeTo() with the quoted
// literals, and $__interval_s with the interval in whole seconds (at least 1). The range
// is widened to whole seconds (from rounded down, to rounded up), which both engines can
// compare.
func ExpandMacros(sql string, tr backend.TimeRange, interval time.Duration) (string, error) {
	from := "'" + tr.From.UTC().Truncate(time.Second).Format(sqlTimeLayout) + "'"
	toT := tr.To.UTC()
	if t := toT.Truncate(time.Second); !t.Equal(toT) {
		toT = t.Add(time.Second)
	}
	to := "'" + toT.Format(sqlTimeLayout) + "'"
	var b strings.Builder
	for {
		i := strings.Index(sql, timeFilterMacro)
		if i < 0 {
			b.WriteString(sql)
			break
		}
		b.WriteString(sql[:i])
		rest := sql[i+len(timeFilterMacro):]
		end := closingParen(rest)
		if end < 0 {
			return "", &QueryError{"rawSql", "$__timeFilter( has no closing parenthesis"}
		}
		expr := strings.TrimSpace(rest[:end])
		if expr == "" {
			return "", &QueryError{"rawSql", "$__timeFilter() needs a column, e.g. $__timeFilter(ts)"}
		}
		fmt.Fprintf(&b, "%s >= %s AND %s < %s", expr, from, expr, to)
		sql = rest[end+1:]
	}
	sql = strings.NewReplacer(
		"$__timeFrom()", from,
		"$__timeTo()", to,
		"$__interval_s", strconv.FormatInt(max(int64(interval/time.Second), 1), 10),
	).Replace(b.String())
	if i := strings.Index(sql, "$__"); i >= 0 {
		word := sql[i:]
		if j := strings.IndexAny(word, " \t\n,()"); j > 0 {
			word = word[:j]
		}
		return "", &QueryError{"rawSql", fmt.Sprintf("unknown macro %s (have $__timeFilter(col), $__timeFrom(), $__timeTo(), $__interval_s)", word)}
	}
	return sql, nil
}

// closingParen returns the index in s of the parenthesis closing one opened just before
// s, or -1.
func closingParen(s string) int {
	depth := 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			if depth == 0 {
				return i
			}
			depth--
		}
	}
	return -1
}

type sqlColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// sqlLine is a line of the /sql stream that is not a row.
type sqlLine struct {
	Columns []sqlColumn `json:"columns"`
	End     *struct {
		Rows      int64 `json:"rows"`
		Truncated bool  `json:"truncated"`
	} `json:"end"`
	Error string `json:"error"`
}

// SQLError is an error the collector reported in the middle of a result.
type SQLError struct{ Msg string }

func (e *SQLError) Error() string { return "the collector's sql query failed mid-result: " + e.Msg }

func (d *Datasource) querySQL(ctx context.Context, q Query, tr backend.TimeRange, interval time.Duration) (backend.DataResponse, error) {
	stmt, err := ExpandMacros(q.RawSQL, tr, interval)
	if err != nil {
		return backend.DataResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := d.api.do(ctx, http.MethodPost, "sql", nil, map[string]any{"query": stmt, "max_rows": sqlMaxRows}, "application/x-ndjson")
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			return backend.DataResponse{}, &QueryError{"rawSql", ae.Msg}
		}
		return backend.DataResponse{}, err
	}
	defer resp.Body.Close()
	f, err := readSQLFrame(resp.Body)
	if f != nil {
		f.Meta.ExecutedQueryString = stmt
	}
	dr := backend.DataResponse{}
	if f != nil {
		dr.Frames = data.Frames{f}
	}
	return dr, err
}

// readSQLFrame reads the /sql stream into a frame typed by its columns. On an error
// mid-result it returns the rows read so far with the error.
func readSQLFrame(r io.Reader) (*data.Frame, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	if !sc.Scan() {
		return nil, fmt.Errorf("reading the sql result: no header line: %w", cmp.Or(sc.Err(), io.ErrUnexpectedEOF))
	}
	var head sqlLine
	if err := json.Unmarshal(sc.Bytes(), &head); err != nil || head.Columns == nil {
		return nil, fmt.Errorf("reading the sql result: line 1 is not {\"columns\": [...]}: %.200s", sc.Bytes())
	}
	f := data.NewFrame("sql")
	kinds := make([]columnKind, len(head.Columns))
	for i, c := range head.Columns {
		kinds[i] = kindOf(c.Type)
		f.Fields = append(f.Fields, kinds[i].newField(c.Name))
	}
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	for line := 2; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if b[0] == '[' {
			if err := appendSQLRow(f, kinds, b); err != nil {
				return f, fmt.Errorf("reading the sql result, line %d: %w", line, err)
			}
			continue
		}
		var l sqlLine
		if err := json.Unmarshal(b, &l); err != nil {
			return f, fmt.Errorf("reading the sql result, line %d: %w", line, err)
		}
		if l.Error != "" {
			return f, &SQLError{l.Error}
		}
		if l.End != nil {
			if l.End.Truncated {
				f.AppendNotices(data.Notice{Severity: data.NoticeSeverityWarning,
					Text: fmt.Sprintf("result truncated to %d rows: add a LIMIT or aggregate", l.End.Rows)})
			}
			return f, nil
		}
	}
	return f, fmt.Errorf("reading the sql result: it ended without an end line: %w", cmp.Or(sc.Err(), io.ErrUnexpectedEOF))
}

// columnKind is the Grafana field type a column's SQL type maps to.
type columnKind int

const (
	kindString columnKind = iota
	kindInt
	kindFloat
	kindBool
	kindTime
)

// kindOf maps DuckDB and ClickHouse type names (Nullable(...) and LowCardinality(...)
// unwrapped) to a field kind; anything else is text.
func kindOf(sqlType string) columnKind {
	t := strings.ToUpper(sqlType)
	for _, wrap := range []string{"NULLABLE(", "LOWCARDINALITY("} {
		for strings.HasPrefix(t, wrap) && strings.HasSuffix(t, ")") {
			t = t[len(wrap) : len(t)-1]
		}
	}
	if i := strings.IndexByte(t, '('); i > 0 {
		t = t[:i]
	}
	switch t {
	case "TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
		"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64":
		return kindInt
	case "FLOAT", "DOUBLE", "REAL", "DECIMAL", "HUGEINT", "UHUGEINT", "FLOAT32", "FLOAT64", "DECIMAL32", "DECIMAL64", "DECIMAL128":
		return kindFloat
	case "BOOLEAN", "BOOL":
		return kindBool
	case "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE",
		"DATE", "DATETIME", "DATETIME64":
		return kindTime
	}
	return kindString
}

func (k columnKind) newField(name string) *data.Field {
	switch k {
	case kindInt:
		return data.NewField(name, nil, []*int64{})
	case kindFloat:
		return data.NewField(name, nil, []*float64{})
	case kindBool:
		return data.NewField(name, nil, []*bool{})
	case kindTime:
		return data.NewField(name, nil, []*time.Time{})
	}
	return data.NewField(name, nil, []*string{})
}

func appendSQLRow(f *data.Frame, kinds []columnKind, line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var row []any
	if err := dec.Decode(&row); err != nil {
		return err
	}
	if len(row) != len(kinds) {
		return fmt.Errorf("row has %d values for %d columns", len(row), len(kinds))
	}
	for i, v := range row {
		val, err := convertSQLValue(kinds[i], v)
		if err != nil {
			return fmt.Errorf("column %q: %w", f.Fields[i].Name, err)
		}
		f.Fields[i].Append(val)
	}
	return nil
}

func convertSQLValue(k columnKind, v any) (any, error) {
	switch k {
	case kindInt:
		if v == nil {
			return (*int64)(nil), nil
		}
		n, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
		if err != nil {
			// An unsigned value past 2^63-1: keep the row, lose the value.
			return (*int64)(nil), nil
		}
		return &n, nil
	case kindFloat:
		if v == nil {
			return (*float64)(nil), nil
		}
		x, err := strconv.ParseFloat(fmt.Sprint(v), 64)
		if err != nil {
			return nil, fmt.Errorf("%v is not a number", v)
		}
		return &x, nil
	case kindBool:
		if v == nil {
			return (*bool)(nil), nil
		}
		b, ok := v.(bool)
		if !ok {
			n, _ := v.(json.Number)
			b = n.String() != "0"
		}
		return &b, nil
	case kindTime:
		if v == nil {
			return (*time.Time)(nil), nil
		}
		s, _ := v.(string)
		t, err := parseSQLTime(s)
		if err != nil {
			return nil, err
		}
		return &t, nil
	}
	if v == nil {
		return (*string)(nil), nil
	}
	s, ok := v.(string)
	if !ok {
		b, _ := json.Marshal(v)
		s = string(b)
	}
	return &s, nil
}

func parseSQLTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
}
