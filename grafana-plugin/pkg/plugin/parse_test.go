package plugin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

func TestExpandMacros(t *testing.T) {
	tr := backend.TimeRange{
		From: time.Date(2026, 11, 25, 10, 0, 0, 123_000_000, time.FixedZone("CET", 3600)),
		To:   time.Date(2026, 11, 25, 11, 30, 0, 0, time.UTC),
	}
	for _, tc := range []struct {
		name, in, want, errField string
	}{
		{"time filter", "SELECT 1 FROM entries WHERE $__timeFilter(ts)", "SELECT 1 FROM entries WHERE ts >= '2026-11-25 09:00:00' AND ts < '2026-11-25 11:30:00'", ""},
		{"expression", "WHERE $__timeFilter( toDateTime(intDiv(ts, 1000000000)) )", "WHERE toDateTime(intDiv(ts, 1000000000)) >= '2026-11-25 09:00:00' AND toDateTime(intDiv(ts, 1000000000)) < '2026-11-25 11:30:00'", ""},
		{"unclosed", "WHERE $__timeFilter(ts", "", "rawSql"},
		{"from and to", "BETWEEN $__timeFrom() AND $__timeTo()", "BETWEEN '2026-11-25 09:00:00' AND '2026-11-25 11:30:00'", ""},
		{"interval", "time_bucket(INTERVAL ($__interval_s) SECOND, ts)", "time_bucket(INTERVAL (30) SECOND, ts)", ""},
		{"two filters", "$__timeFilter(a) OR $__timeFilter(b)", "a >= '2026-11-25 09:00:00' AND a < '2026-11-25 11:30:00' OR b >= '2026-11-25 09:00:00' AND b < '2026-11-25 11:30:00'", ""},
		{"no column", "WHERE $__timeFilter()", "", "rawSql"},
		{"unknown macro", "WHERE $__unixEpochFilter(ts)", "", "rawSql"},
		{"no macros", "SELECT 42", "SELECT 42", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExpandMacros(tc.in, tr, 30*time.Second)
			var qe *QueryError
			if tc.errField != "" {
				if !errors.As(err, &qe) || qe.Field != tc.errField {
					t.Fatalf("err = %v, want a QueryError on %s", err, tc.errField)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
	// To is rounded up to the next second, so the range never loses its end.
	got, _ := ExpandMacros("$__timeTo()", backend.TimeRange{To: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC)}, time.Second)
	if got != "'2026-01-01 00:00:01'" {
		t.Errorf("to rounded = %s", got)
	}
}

func TestKindOf(t *testing.T) {
	for typ, want := range map[string]columnKind{
		"BIGINT": kindInt, "UBIGINT": kindInt, "Nullable(UInt64)": kindInt, "Int32": kindInt,
		"DOUBLE": kindFloat, "DECIMAL(18,3)": kindFloat, "Float64": kindFloat, "HUGEINT": kindFloat,
		"BOOLEAN": kindBool, "TIMESTAMP_NS": kindTime, "TIMESTAMP WITH TIME ZONE": kindTime,
		"DateTime('UTC')": kindTime, "LowCardinality(Nullable(String))": kindString, "VARCHAR": kindString,
		"UUID": kindString, "JSON": kindString, "VARCHAR[]": kindString,
	} {
		if got := kindOf(typ); got != want {
			t.Errorf("kindOf(%q) = %d, want %d", typ, got, want)
		}
	}
}

func TestReadSQLFrame(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		rows     int
		errPart  string
		notice   bool
	}{
		{"typed", `{"columns":[{"name":"n","type":"BIGINT"},{"name":"t","type":"TIMESTAMP_NS"},{"name":"s","type":"VARCHAR"},{"name":"x","type":"DOUBLE"},{"name":"b","type":"BOOLEAN"}]}
[1,"2026-11-25T10:00:00.123456789Z","a",1.5,true]
[null,null,null,null,null]
{"end":{"rows":2,"truncated":false}}
`, 2, "", false},
		{"truncated", `{"columns":[{"name":"n","type":"BIGINT"}]}
[1]
{"end":{"rows":1,"truncated":true}}
`, 1, "", true},
		{"error mid-stream", `{"columns":[{"name":"n","type":"BIGINT"}]}
[1]
{"error":"out of memory"}
`, 1, "out of memory", false},
		{"cut off", `{"columns":[{"name":"n","type":"BIGINT"}]}
[1]
`, 1, "without an end line", false},
		{"wrong width", `{"columns":[{"name":"n","type":"BIGINT"}]}
[1,2]
`, 0, "line 2", false},
		{"bad time", `{"columns":[{"name":"t","type":"TIMESTAMP"}]}
["yesterday"]
`, 0, `column "t"`, false},
		{"no header", ``, 0, "no header line", false},
		{"not a header", `[1]`, 0, "line 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := readSQLFrame(strings.NewReader(tc.in))
			if tc.errPart == "" && err != nil || tc.errPart != "" && (err == nil || !strings.Contains(err.Error(), tc.errPart)) {
				t.Fatalf("err = %v, want one containing %q", err, tc.errPart)
			}
			if f != nil && f.Rows() != tc.rows {
				t.Errorf("%d rows, want %d", f.Rows(), tc.rows)
			}
			if f != nil && (len(f.Meta.Notices) > 0) != tc.notice {
				t.Errorf("notices %v, want a truncation notice: %v", f.Meta.Notices, tc.notice)
			}
		})
	}
}

func TestStreamPathRoundTrip(t *testing.T) {
	q := Query{QueryType: QueryAlerts, Host: "web-1 (eu/west)", TripwireType: "FILE", Rule: "décoy", Text: "/etc/passwd"}
	ch := alertsChannel(backend.PluginContext{DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{UID: "tripwire"}}, q)
	path, ok := strings.CutPrefix(ch, "ds/tripwire/")
	if !ok {
		t.Fatalf("channel %q", ch)
	}
	f, err := parseStreamPath(path)
	if err != nil || f != filterOf(q) {
		t.Errorf("parseStreamPath(%q) = %+v, %v; want %+v", path, f, err, filterOf(q))
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		`{"refId":"A","queryType":"alerts","host":"web-1","limit":10,"live":true}`,
		`{"queryType":"counts","groupBy":"TYPE"}`,
		`{"queryType":"sql","rawSql":"SELECT 1"}`,
		`{"queryType":"alerts","limit":"x"}`, `[]`, `null`, `{"queryType":7}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuery(b)
		var qe *QueryError
		if err != nil && !errors.As(err, &qe) {
			t.Fatalf("error %v is not a QueryError", err)
		}
		if err == nil && q.validate() != nil {
			t.Fatalf("a parsed query does not validate again: %+v", q)
		}
	})
}

func FuzzParseStreamPath(f *testing.F) {
	for _, s := range []string{"alerts", "alerts/eyJob3N0Ijoid2ViLTEifQ", "alerts/", "alerts/!!", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if flt, err := parseStreamPath(path); err == nil && flt.Severity != "" && !strings.Contains("INFO WARN CRITICAL", flt.Severity) {
			t.Fatalf("accepted severity %q", flt.Severity)
		}
	})
}

func FuzzReadSQLFrame(f *testing.F) {
	f.Add([]byte("{\"columns\":[{\"name\":\"n\",\"type\":\"BIGINT\"},{\"name\":\"t\",\"type\":\"TIMESTAMP\"}]}\n[1,\"2026-01-01T00:00:00Z\"]\n{\"end\":{\"rows\":1,\"truncated\":false}}\n"))
	f.Add([]byte("{\"columns\":[]}\n{\"error\":\"x\"}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := readSQLFrame(strings.NewReader(string(b)))
		if err == nil && fr == nil {
			t.Fatal("no frame and no error")
		}
		if fr != nil {
			if _, err := fr.RowLen(); err != nil {
				t.Fatalf("ragged frame: %v", err)
			}
		}
	})
}
