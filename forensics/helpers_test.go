package forensics

import (
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/proto/chain"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// t0 is the scripted incident's clock.
var t0 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// writeChain appends payloads to a new audit log in dir with the agent's writer and
// closes it. maxSeg bounds segments (0: the default).
func writeChain(t testing.TB, dir string, maxSeg int64, payloads ...chain.Payload) {
	t.Helper()
	l, err := audit.Open(dir, audit.Options{MaxSegmentBytes: maxSeg, Now: fixedNow})
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	for i := 0; i < len(payloads); i += 256 {
		if _, err := l.Append(payloads[i:min(i+256, len(payloads))]...); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The agent's lock file and acked mark are not evidence the exporter reads.
}

func fileEvent(i int) chain.Payload {
	uid := int64(1000)
	return chain.Payload{
		Time: t0.Add(time.Duration(i) * time.Millisecond),
		Kind: chain.KindEvent,
		Event: &chain.Event{
			Type: chain.TypeFile, Rule: "aws-credentials-read", Severity: chain.SeverityCritical, Source: "fanotify",
			Path: "/home/deploy/.aws/credentials", Op: "read", Count: 1, PID: int32(4000 + i%1000), PPID: 1234,
			UID: &uid, User: "deploy", Exe: "/usr/bin/python3.11",
			Cmdline: fmt.Sprintf("python3 /opt/app/sync.py --profile prod --bucket backups-%d", i),
		},
	}
}

func exportString(t testing.TB, src Source, opts Options) string {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	if opts.Version == "" {
		opts.Version = "test"
	}
	var b bytes.Buffer
	if _, err := Export(context.Background(), src, &b, opts); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return b.String()
}

// exportFile exports src in opts.Format (SQL when unset) to a new file, as the command's
// --out does, and returns its path.
func exportFile(t testing.TB, src Source, opts Options) string {
	t.Helper()
	if opts.Format == "" {
		opts.Format = FormatSQL
	}
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	out := filepath.Join(t.TempDir(), "export."+string(opts.Format))
	var err error
	if opts.Format == FormatParquet {
		_, err = ExportParquet(context.Background(), src, out, opts, t.TempDir())
	} else {
		var fh *os.File
		if fh, err = os.Create(out); err != nil {
			t.Fatal(err)
		}
		_, err = Export(context.Background(), src, fh, opts)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return out
}

func dirSource(t testing.TB, dir, host string) *DirSource {
	t.Helper()
	s, err := NewDirSource(dir, host)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loadScript executes a SQL export statement by statement, as the duckdb shell would,
// into a fresh in-memory DuckDB.
func loadScript(t testing.TB, script string) *sql.DB {
	t.Helper()
	db, err := OpenDuckDB("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := LoadScript(context.Background(), db, strings.NewReader(script)); err != nil {
		t.Fatalf("loading the export: %v", err)
	}
	return db
}

// rows runs q and returns its rows as text, NULL as "NULL", columns joined by '|'.
func rows(t testing.TB, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rs, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			parts[i] = "NULL"
			if v.Valid {
				parts[i] = v.String
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	return out
}

func writeFile(t testing.TB, path, s string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func formatUint(v uint64) string { return fmt.Sprint(v) }

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
