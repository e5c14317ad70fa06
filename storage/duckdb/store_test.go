package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/goleak"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openFile(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		return openFile(t, filepath.Join(t.TempDir(), "tripwire.duckdb"))
	})
}

func TestConformanceInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return openFile(t, "") })
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "tripwire.duckdb") // Open creates the directory
	s := openFile(t, path)
	h := storage.Host{HostID: "h1", Hostname: "web-1", OS: "linux", Watchers: "[]",
		FirstSeen: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), LastSeen: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
	if err := s.RegisterHost(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	c := storetest.NewChain()
	var es []batch.Entry
	for i := range 5 {
		es = append(es, c.Event(h.FirstSeen.Add(time.Duration(i)*time.Second), chain.Event{
			Type: chain.TypeFile, Rule: "passwd", Severity: chain.SeverityCritical, Path: "/etc/passwd", PID: int32(i + 1)}))
	}
	if err := s.AppendEntries(t.Context(), h.HostID, append(es[:3:3], es[4])); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openFile(t, path)
	defer s.Close()
	if seq, hash, err := s.Head(t.Context(), h.HostID); err != nil || seq != 3 || hash != es[2].Hash {
		t.Fatalf("Head after reopen = %d %q %v, want 3 %q", seq, hash, err, es[2].Hash)
	}
	// The hole at 4 and the entry past it survived too.
	if err := s.AppendEntries(t.Context(), h.HostID, es[3:4]); err != nil {
		t.Fatal(err)
	}
	if seq, hash, err := s.Head(t.Context(), h.HostID); err != nil || seq != 5 || hash != es[4].Hash {
		t.Fatalf("Head after filling the hole = %d %q %v, want 5 %q", seq, hash, err, es[4].Hash)
	}
	hs, err := s.Hosts(t.Context())
	if err != nil || len(hs) != 1 || !hs[0].FirstSeen.Equal(h.FirstSeen) || hs[0].HeadSeq != 5 {
		t.Fatalf("Hosts after reopen = %+v, %v", hs, err)
	}
	au, err := s.Audit(t.Context(), storage.AuditFilter{})
	if err != nil || len(au) != 5 {
		t.Fatalf("Audit after reopen: %d entries, %v", len(au), err)
	}
}

func appliedMigrations(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(), "SELECT version || ' ' || name FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tripwire.duckdb")
	s := openFile(t, path)
	first := appliedMigrations(t, s)
	if len(first) == 0 || first[0] != "1 0001_init.sql" {
		t.Fatalf("schema_migrations = %v, want 0001_init.sql first", first)
	}
	// Running the migrations again on an open database changes nothing.
	if err := migrate(t.Context(), s.db, s.logger); err != nil {
		t.Fatalf("migrating twice: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFile(t, path)
	defer s.Close()
	if again := appliedMigrations(t, s); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("schema_migrations after reopening = %v, want %v", again, first)
	}
}

func TestMigrationsAddedLater(t *testing.T) {
	db := openRaw(t)
	v1 := fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")}}
	if err := migrateFS(t.Context(), db, v1, discard()); err != nil {
		t.Fatal(err)
	}
	v2 := fstest.MapFS{
		"0001_a.sql": v1["0001_a.sql"],
		"0002_b.sql": {Data: []byte("CREATE TABLE b (y INTEGER); INSERT INTO b VALUES (1), (2);")},
	}
	if err := migrateFS(t.Context(), db, v2, discard()); err != nil {
		t.Fatalf("applying 0002 over 0001: %v", err)
	}
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM b").Scan(&n); err != nil || n != 2 {
		t.Fatalf("table b has %d rows (%v), want 2", n, err)
	}
	// A database migrated by a newer build is refused.
	var tooNew *SchemaTooNewError
	if err := migrateFS(t.Context(), db, v1, discard()); !errors.As(err, &tooNew) || tooNew.Version != 2 || tooNew.Known != 1 {
		t.Fatalf("migrating a newer database: got %v, want a SchemaTooNewError 2 > 1", err)
	}
	// A failing migration leaves nothing behind, and is not recorded.
	v3 := fstest.MapFS{
		"0001_a.sql": v1["0001_a.sql"], "0002_b.sql": v2["0002_b.sql"],
		"0003_c.sql": {Data: []byte("CREATE TABLE c (z INTEGER); SELECT no_such_column FROM c;")},
	}
	if err := migrateFS(t.Context(), db, v3, discard()); err == nil {
		t.Fatal("a failing migration reported success")
	}
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM c").Scan(&n); err == nil {
		t.Fatal("table c of a failed migration exists")
	}
	for _, bad := range []fstest.MapFS{
		{"one.sql": {}},
		{"0001_a.sql": {}, "001_b.sql": {}},
	} {
		if err := migrateFS(t.Context(), db, bad, discard()); err == nil {
			t.Errorf("migrations %v accepted", bad)
		}
	}
}

// openRaw returns an empty in-memory database, for migrations of its own.
func openRaw(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestTimeZoneIsUTC(t *testing.T) {
	t.Setenv("TZ", "Asia/Kolkata")
	s := openFile(t, "")
	defer s.Close()
	var tz string
	if err := s.db.QueryRowContext(t.Context(), "SELECT current_setting('TimeZone')").Scan(&tz); err != nil {
		t.Fatal(err)
	}
	if tz != "UTC" {
		t.Errorf("session time zone = %q, want UTC", tz)
	}
}

// TestChainVerifiesInSQL checks the forensic promise of the schema: the chain recomputes
// with one SQL expression over the stored text.
func TestChainVerifiesInSQL(t *testing.T) {
	s := openFile(t, "")
	defer s.Close()
	c := storetest.NewChain()
	var es []batch.Entry
	for i := range 50 {
		es = append(es, c.Event(time.Unix(int64(i), 0), chain.Event{Type: chain.TypeProcess, Rule: "nc",
			Severity: chain.SeverityWarn, Cmdline: `nc -e "/bin/sh" <&1 ` + "\u00e9\n"}))
	}
	if err := s.AppendEntries(t.Context(), "h", es); err != nil {
		t.Fatal(err)
	}
	var bad, linked int
	err := s.db.QueryRowContext(t.Context(), `SELECT
			count(*) FILTER (WHERE hash <> sha256(prev_hash || payload)),
			count(*) FILTER (WHERE linked)
		FROM (SELECT hash, prev_hash, payload,
				prev_hash = lag(hash, 1, repeat('0', 64)) OVER (ORDER BY seq) AS linked
			FROM entries WHERE host_id = 'h')`).Scan(&bad, &linked)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 || linked != len(es) {
		t.Errorf("in SQL: %d entries do not hash, %d of %d link to the one before", bad, linked, len(es))
	}
	// The alerts view serves analysts too.
	var n int
	var detail string
	if err := s.db.QueryRowContext(t.Context(), "SELECT count(*), any_value(event_detail->>'$.rule') FROM alerts").Scan(&n, &detail); err != nil || n != 50 || detail != "nc" {
		t.Errorf("alerts view: %d rows, rule %q, %v", n, detail, err)
	}
}

// TestEventTimeInSQL checks what an analyst sees of event times: TIMESTAMP_NS in UTC,
// to the nanosecond, in the table and the alerts view, and the conversion the schema
// recommends for comparing with TIMESTAMPTZ values, whatever the session's zone.
func TestEventTimeInSQL(t *testing.T) {
	s := openFile(t, "")
	defer s.Close()
	ts := time.Date(2026, 3, 14, 15, 56, 53, 123456789, time.FixedZone("UTC+05:30", 5*3600+1800))
	e := storetest.NewChain().Event(ts, chain.Event{Type: chain.TypeFile, Rule: "passwd", Severity: chain.SeverityCritical})
	if err := s.AppendEntries(t.Context(), "h", []batch.Entry{e}); err != nil {
		t.Fatal(err)
	}
	conn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// As in a duckdb CLI on a machine that is not in UTC.
	if _, err := conn.ExecContext(t.Context(), "SET TimeZone = 'America/New_York'"); err != nil {
		t.Fatal(err)
	}
	var typ, text string
	var ns int64
	var match bool
	err = conn.QueryRowContext(t.Context(), `SELECT typeof(a.ts), a.ts::VARCHAR, epoch_ns(a.ts),
			timezone('UTC', a.ts) = TIMESTAMPTZ '2026-03-14 10:26:53.123456+00'
		FROM alerts AS a JOIN entries AS e USING (host_id, seq)
		WHERE e.ts >= '2026-03-14 10:26:53.123456789' AND e.ts < '2026-03-14 10:26:53.12345679'`).Scan(&typ, &text, &ns, &match)
	if err != nil {
		t.Fatal(err)
	}
	if typ != "TIMESTAMP_NS" || text != "2026-03-14 10:26:53.123456789" || ns != ts.UnixNano() || !match {
		t.Errorf("ts in SQL: %s %q epoch_ns %d, timezone('UTC', ts) matches: %v; want TIMESTAMP_NS %q %d true",
			typ, text, ns, match, "2026-03-14 10:26:53.123456789", ts.UnixNano())
	}
}

// TestOpenRefusesMicrosecondFile checks that a file made by a build whose 0001_init kept
// event times as TIMESTAMPTZ is refused rather than used with times rounded.
func TestOpenRefusesMicrosecondFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.duckdb")
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(t.Context(), `
		CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL);
		INSERT INTO schema_migrations VALUES (1, '0001_init.sql', now());
		CREATE TABLE entries (host_id VARCHAR, seq UBIGINT, ts TIMESTAMPTZ NOT NULL);`)
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err == nil {
		s.Close()
		t.Fatal("a file with entries.ts TIMESTAMPTZ was opened")
	}
	if !strings.Contains(err.Error(), "TIMESTAMP_NS") {
		t.Errorf("Open: %v; want an error naming TIMESTAMP_NS", err)
	}
}

func TestDuplicateSeqInOneCall(t *testing.T) {
	s := openFile(t, "")
	defer s.Close()
	a, b := storetest.NewChain(), storetest.NewChain()
	e1 := a.Event(time.Unix(1, 0), chain.Event{Type: chain.TypeFile, Rule: "first"})
	f1 := b.Event(time.Unix(2, 0), chain.Event{Type: chain.TypeFile, Rule: "second"})
	if err := s.AppendEntries(t.Context(), "h", []batch.Entry{e1, f1}); err != nil {
		t.Fatal(err)
	}
	au, err := s.Audit(t.Context(), storage.AuditFilter{})
	if err != nil || len(au) != 1 || au[0].Payload != string(e1.Payload) {
		t.Fatalf("Audit = %+v, %v; want the first of the two entries for seq 1", au, err)
	}
}

func TestWriteWaitEndsWithContext(t *testing.T) {
	s := openFile(t, "")
	defer s.Close()
	if err := s.lockWrite(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.unlockWrite()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := s.TouchHost(ctx, "h", time.Now())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a write behind a held writer slot: got %v, want context.DeadlineExceeded", err)
	}
}

func TestOpenRefusesQueryInPath(t *testing.T) {
	if s, err := Open(filepath.Join(t.TempDir(), "x.duckdb?access_mode=read_only"), nil); err == nil {
		s.Close()
		t.Fatal("a path with '?' was accepted")
	}
}

// BenchmarkAppendEntries measures the ingest ceiling of one store: consecutive batches
// of 500 realistic entries of one host, each call one committed transaction on a file.
// Times have nanoseconds, as an agent's clock gives them.
func BenchmarkAppendEntries(b *testing.B) {
	const per = 500
	s := openFile(b, filepath.Join(b.TempDir(), "bench.duckdb"))
	defer s.Close()
	c := storetest.NewChain()
	base := time.Date(2026, 3, 14, 0, 0, 0, 123456789, time.UTC)
	uid := int64(1000)
	next := func() []batch.Entry {
		es := make([]batch.Entry, per)
		for i := range es {
			es[i] = c.Event(base.Add(time.Duration(i)*1733*time.Nanosecond), chain.Event{
				Type: chain.TypeFile, Rule: "passwd-read", Severity: chain.SeverityCritical, Source: "fanotify",
				Path: "/etc/passwd", Op: "read", Count: 1, PID: 4242, PPID: 1, UID: &uid, User: "deploy",
				Exe: "/usr/bin/cat", Cmdline: "cat /etc/passwd",
			})
		}
		base = base.Add(time.Second)
		return es
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		es := next()
		b.StartTimer()
		if err := s.AppendEntries(ctx, "bench-host", es); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "entries/s")
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestQueryRefusedByEngine checks that each statement is refused by one of DuckDB's own
// mechanisms (statement type, read-only transaction, external access off), reported as
// storage.ErrQueryRefused, and that none changed anything.
func TestQueryRefusedByEngine(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "t.duckdb"))
	defer s.Close()
	mustAppend := func(es ...batch.Entry) {
		if err := s.AppendEntries(t.Context(), "h", es); err != nil {
			t.Fatal(err)
		}
	}
	c := storetest.NewChain()
	mustAppend(c.Event(time.Unix(1, 0), chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityInfo}))
	out := filepath.Join(t.TempDir(), "out.csv")
	for _, q := range []string{
		"INSERT INTO hosts (host_id) VALUES ('x')",
		"UPDATE entries SET kind = 'x'",
		"DELETE FROM entries",
		"DROP TABLE entries",
		"CREATE TABLE intruder (x INTEGER)",
		"ALTER TABLE entries ADD COLUMN x INTEGER",
		"ATTACH '" + filepath.Join(t.TempDir(), "other.db") + "' AS other",
		"COPY entries TO '" + out + "'",
		"EXPORT DATABASE '" + t.TempDir() + "'",
		"SELECT * FROM read_csv('/etc/passwd')",
		"SELECT * FROM read_text('/etc/passwd')",
		"SELECT * FROM glob('/etc/*')",
		"SET enable_external_access = true",
		"RESET enable_external_access",
		"PRAGMA enable_profiling",
		"CALL pragma_version()",
		"INSTALL httpfs",
		"LOAD httpfs",
		"CHECKPOINT",
		"BEGIN TRANSACTION",
		"SELECT 1; DROP TABLE entries",
	} {
		var r recorder
		_, _, err := s.Query(t.Context(), q, 10, &r)
		if !errors.Is(err, storage.ErrQueryRefused) {
			t.Errorf("%s: %v, want an error wrapping storage.ErrQueryRefused", q, err)
		}
	}
	// DuckDB's parser refuses these before any mechanism is needed.
	for _, q := range []string{
		"WITH gone AS (DELETE FROM entries RETURNING *) SELECT * FROM gone",
		"SELECT * FROM query('DROP TABLE entries')",
	} {
		var r recorder
		if _, _, err := s.Query(t.Context(), q, 10, &r); err == nil {
			t.Errorf("%s ran", q)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("COPY wrote %s", out)
	}
	var n int
	if err := s.db.QueryRowContext(t.Context(), "SELECT count(*) FROM entries").Scan(&n); err != nil || n != 1 {
		t.Errorf("entries after refused statements: %d (%v), want 1", n, err)
	}
	// Turning external access back on is refused to the store itself too.
	if _, err := s.db.ExecContext(t.Context(), "SET enable_external_access = true"); err == nil {
		t.Error("external access could be turned back on")
	}
}

// TestQueryStreamsRows checks what Query gives a RowWriter: column types as DuckDB names
// them, values ready for JSON, and an error of the writer ending the query.
func TestQueryStreamsRows(t *testing.T) {
	s := openFile(t, "")
	defer s.Close()
	var r recorder
	n, truncated, err := s.Query(t.Context(), `SELECT 1::BIGINT AS i, 'x' AS s, TIMESTAMP_NS '2026-01-02 03:04:05.123456789' AS t,
		'nan'::DOUBLE AS f, NULL AS z, [1, 2] AS l, gen_random_uuid() IS NOT NULL AS b, '6f1c9a52-4c1e-4b8e-9a57-7d3f2b0c5e11'::UUID AS u`, 5, &r)
	if err != nil || n != 1 || truncated {
		t.Fatalf("Query = %d %v %v", n, truncated, err)
	}
	if got := fmt.Sprint(r.cols); got != "[{i BIGINT} {s VARCHAR} {t TIMESTAMP_NS} {f DOUBLE} {z INTEGER} {l INTEGER[]} {b BOOLEAN} {u UUID}]" {
		t.Errorf("columns = %s", got)
	}
	if got := fmt.Sprint(r.rows[0]); got != "[1 x 2026-01-02T03:04:05.123456789Z NaN <nil> [1 2] true 6f1c9a52-4c1e-4b8e-9a57-7d3f2b0c5e11]" {
		t.Errorf("row = %s", got)
	}
	stop := errors.New("client gone")
	r = recorder{fail: stop}
	if _, _, err := s.Query(t.Context(), "SELECT * FROM range(10)", 100, &r); !errors.Is(err, stop) {
		t.Errorf("a failing writer: %v, want its error", err)
	}
}

type recorder struct {
	cols []storage.Column
	rows [][]any
	fail error
}

func (r *recorder) Columns(cols []storage.Column) error { r.cols = cols; return nil }
func (r *recorder) Row(v []any) error {
	r.rows = append(r.rows, slices.Clone(v))
	return r.fail
}
