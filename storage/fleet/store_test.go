package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"time"

	pgschema "github.com/tripwire-project/tripwire/sql/postgres"

	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// openTest opens a store on new, empty databases of the package's servers.
func openTest(t *testing.T) (*Store, Options) {
	t.Helper()
	ch := testservers.ClickHouse(t)
	o := Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: testservers.PostgreSQL(t)}
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, o
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s, _ := openTest(t)
		return s
	})
}

// chCount returns a count from ClickHouse.
func chCount(t *testing.T, s *Store, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := s.ch.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// pgCount returns a count from PostgreSQL.
func pgCount(t *testing.T, s *Store, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.pg.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func chExec(t *testing.T, s *Store, query string) {
	t.Helper()
	if err := s.ch.Exec(t.Context(), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func pgExec(t *testing.T, s *Store, query string) {
	t.Helper()
	if _, err := s.pg.Exec(t.Context(), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	s, o := openTest(t)
	defer s.Close()
	wantApplied := func(s *Store) {
		t.Helper()
		var v int32
		var name string
		if err := s.pg.QueryRow(t.Context(), "SELECT version, name FROM schema_migrations ORDER BY version LIMIT 1").Scan(&v, &name); err != nil || v != 1 || name != "0001_init.sql" {
			t.Fatalf("PostgreSQL schema_migrations starts with %d %q (%v), want 1 0001_init.sql", v, name, err)
		}
		if n := pgCount(t, s, "SELECT count(*) FROM schema_migrations"); n != int64(pgMigrations(t)) {
			t.Errorf("PostgreSQL schema_migrations has %d rows, want %d", n, pgMigrations(t))
		}
		if n := chCount(t, s, "SELECT count() FROM schema_migrations FINAL WHERE version = 1 AND name = '0001_init.sql'"); n != 1 {
			t.Errorf("ClickHouse schema_migrations holds version 1 %d times, want once", n)
		}
	}
	wantApplied(s)
	if err := s.migrate(t.Context()); err != nil {
		t.Fatalf("migrating twice: %v", err)
	}
	wantApplied(s)
	// A second collector opening the same databases changes nothing either.
	again, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	wantApplied(again)
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}

	// Databases migrated by a newer build are refused, naming the engine.
	pgExec(t, s, "INSERT INTO schema_migrations VALUES (99, '0099_future.sql', now())")
	_, err = Open(t.Context(), o)
	var tooNew *SchemaTooNewError
	if !errors.As(err, &tooNew) || tooNew.Engine != "PostgreSQL" || tooNew.Version != 99 || tooNew.Known != pgLatest(t) {
		t.Fatalf("opening a PostgreSQL schema from the future: got %v, want a SchemaTooNewError 99 > %d", err, pgLatest(t))
	}
	pgExec(t, s, "DELETE FROM schema_migrations WHERE version = 99")
	batch, err := s.ch.PrepareBatch(t.Context(), "INSERT INTO schema_migrations (version, name, applied_at)")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(batch.Append(uint32(7), "0007_future.sql", time.Now()), batch.Send()); err != nil {
		t.Fatal(err)
	}
	if _, err = Open(t.Context(), o); !errors.As(err, &tooNew) || tooNew.Engine != "ClickHouse" || tooNew.Version != 7 {
		t.Fatalf("opening a ClickHouse schema from the future: got %v, want a SchemaTooNewError 7 > 1", err)
	}
}

func TestStatements(t *testing.T) {
	got := statements("-- a comment; with a semicolon\nCREATE TABLE a (x String) -- trailing\n  ENGINE = Log;\n\n-- b\nCREATE TABLE b (y UInt8) ENGINE = Log;\nSELECT 1")
	want := []string{"CREATE TABLE a (x String) -- trailing\n  ENGINE = Log", "CREATE TABLE b (y UInt8) ENGINE = Log", "SELECT 1"}
	if !slices.Equal(got, want) {
		t.Errorf("statements = %q, want %q", got, want)
	}
}

func TestHistorySchema(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	c := storetest.NewChain()
	es := []batch.Entry{
		c.Event(time.Date(2026, 3, 31, 23, 59, 59, 999999999, time.UTC), chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityInfo}),
		c.Event(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityInfo}),
		c.Event(time.Date(1969, 12, 31, 23, 0, 0, 1, time.UTC), chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityInfo}),
	}
	if err := s.AppendEntries(t.Context(), "h", es); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ch.Query(t.Context(), "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = 'entries' AND active ORDER BY partition")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	if want := []string{"196912", "202603", "202604"}; !slices.Equal(parts, want) {
		t.Errorf("entries partitions = %v, want one per UTC month: %v", parts, want)
	}
	// ts is exact nanoseconds, as an analyst reads them.
	if n := chCount(t, s, "SELECT count() FROM entries WHERE ts = ? AND seq = 1", es[0].Time.UnixNano()); n != 1 {
		t.Errorf("entries with ts = %d: %d, want 1", es[0].Time.UnixNano(), n)
	}
	if n := pgCount(t, s, "SELECT count(*) FROM alerts WHERE ts_ns = $1 AND status = 'open'", es[2].Time.UnixNano()); n != 1 {
		t.Errorf("open alerts with ts_ns = %d: %d, want 1", es[2].Time.UnixNano(), n)
	}
}

// TestClickHouseFailure checks that a call whose ClickHouse write fails returns an error
// and leaves PostgreSQL unchanged, and that the resend stores everything once ClickHouse
// is back.
func TestClickHouseFailure(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	es := chainOf(10)
	if err := s.AppendEntries(t.Context(), "h", es[:4]); err != nil {
		t.Fatal(err)
	}
	chExec(t, s, "RENAME TABLE entries TO entries_away")
	if err := s.AppendEntries(t.Context(), "h", es[4:]); err == nil {
		t.Fatal("AppendEntries returned nil with ClickHouse's table gone")
	}
	if seq, _, err := s.Head(t.Context(), "h"); err != nil || seq != 4 {
		t.Fatalf("Head after a failed ClickHouse write = %d, %v; want 4", seq, err)
	}
	if n := pgCount(t, s, "SELECT count(*) FROM chain_entries"); n != 4 {
		t.Errorf("PostgreSQL indexes %d entries after a failed ClickHouse write, want 4", n)
	}
	chExec(t, s, "RENAME TABLE entries_away TO entries")
	if err := s.AppendEntries(t.Context(), "h", es); err != nil {
		t.Fatalf("resend after ClickHouse is back: %v", err)
	}
	wantAuditHashes(t, s, es)
	if n := chCount(t, s, "SELECT count() FROM entries"); n != uint64(len(es)) {
		t.Errorf("ClickHouse holds %d rows, want %d: the resend rewrote held entries", n, len(es))
	}
}

// TestPostgreSQLFailure checks that a call whose PostgreSQL write fails after ClickHouse
// took the rows returns an error, that the orphan rows are never shown, and that what
// PostgreSQL then records decides which row is the entry, even a different one.
func TestPostgreSQLFailure(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	es := chainOf(6)
	pgExec(t, s, "ALTER TABLE alerts RENAME TO alerts_away")
	if err := s.AppendEntries(t.Context(), "h", es); err == nil {
		t.Fatal("AppendEntries returned nil with PostgreSQL's alerts table gone")
	}
	if n := chCount(t, s, "SELECT count() FROM entries"); n != uint64(len(es)) {
		t.Fatalf("ClickHouse holds %d rows of the failed call, want %d (the test needs the orphans)", n, len(es))
	}
	if seq, _, err := s.Head(t.Context(), "h"); err != nil || seq != 0 {
		t.Fatalf("Head after a failed PostgreSQL write = %d, %v; want 0", seq, err)
	}
	if au, err := s.Audit(t.Context(), storage.AuditFilter{}); err != nil || len(au) != 0 {
		t.Fatalf("Audit shows %d orphan entries (%v), want none", len(au), err)
	}
	pgExec(t, s, "ALTER TABLE alerts_away RENAME TO alerts")

	// Seqs 1..3 arrive with other content (a forged chain, as a cloned certificate would
	// send): PostgreSQL records it, and it is what reads show.
	forged := storetest.NewChain()
	var fs []batch.Entry
	for i := range 3 {
		fs = append(fs, forged.Event(time.Unix(int64(1000+i), 7), chain.Event{Type: chain.TypeProcess, Rule: "forged", Severity: chain.SeverityInfo}))
	}
	if err := s.AppendEntries(t.Context(), "h", fs); err != nil {
		t.Fatal(err)
	}
	// The original resent: 1..3 are held (as forged) and kept, 4..6 are stored.
	if err := s.AppendEntries(t.Context(), "h", es); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(fs), es[3:]...)
	wantAuditHashes(t, s, want)
	as, err := s.Alerts(t.Context(), storage.AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		var ev chain.Event
		if err := json.Unmarshal(a.EventDetail, &ev); err != nil {
			t.Fatalf("alert %d: %v", a.Seq, err)
		}
		if wantRule := map[bool]string{true: "forged", false: "passwd"}[a.Seq <= 3]; ev.Rule != wantRule || a.RuleName != wantRule {
			t.Errorf("alert seq %d: rule %q, detail rule %q, want %q", a.Seq, a.RuleName, ev.Rule, wantRule)
		}
	}
	// ClickHouse keeps the orphans of 1..3 and, resent, the copies of 4..6: FINAL folds
	// the identical copies, and the orphans differ (another time and hash).
	if n := chCount(t, s, "SELECT count() FROM entries FINAL"); n != 9 {
		t.Errorf("entries FINAL holds %d rows, want 9 (6 held, 3 orphans)", n)
	}
}

// chainOf returns n linked file events one second apart, rule "passwd".
func chainOf(n int) []batch.Entry {
	c := storetest.NewChain()
	es := make([]batch.Entry, n)
	for i := range es {
		es[i] = c.Event(time.Date(2026, 3, 14, 10, 0, i, 123456789, time.UTC),
			chain.Event{Type: chain.TypeFile, Rule: "passwd", Severity: chain.SeverityCritical, Path: "/etc/passwd"})
	}
	return es
}

// wantAuditHashes checks that Audit returns exactly want, payloads and hashes included.
func wantAuditHashes(t *testing.T, s *Store, want []batch.Entry) {
	t.Helper()
	au, err := s.Audit(t.Context(), storage.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(au) != len(want) {
		t.Fatalf("Audit returned %d entries, want %d", len(au), len(want))
	}
	for i, w := range want {
		g := au[i]
		if g.Seq != w.Seq || g.Hash != w.Hash || g.PrevHash != w.PrevHash || g.Payload != string(w.Payload) || !g.Time.Equal(w.Time) {
			t.Errorf("audit entry %d = seq %d hash %s at %v, want seq %d hash %s at %v", i, g.Seq, g.Hash, g.Time, w.Seq, w.Hash, w.Time)
		}
	}
}

// TestOutageMidStream stops each server in turn while a host keeps sending batches, as
// an agent does: a batch that fails is not acked and is resent, with the ones after it,
// until it is stored. At the end every entry is stored exactly once.
func TestOutageMidStream(t *testing.T) {
	pg, ch := testservers.PrivatePostgreSQL(t), testservers.PrivateClickHouse(t)
	s, err := Open(t.Context(), Options{ClickHouseAddr: ch.Addr(), ClickHouseDatabase: "tripwire", PostgresDSN: pg.DSN()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RegisterHost(t.Context(), storage.Host{HostID: "h", Hostname: "web-1", Watchers: "[]"}); err != nil {
		t.Fatal(err)
	}
	const per = 20
	es := chainOf(8 * per)
	acked := 0 // entries acked so far: the agent resends from here
	send := func() error {
		end := min(acked+2*per, len(es))
		if err := s.AppendEntries(t.Context(), "h", es[acked:end]); err != nil {
			return err
		}
		acked = end
		return nil
	}
	// sendUntil resends until a batch is stored, as the agent's shipper retries.
	sendUntil := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := send()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still failing after 30 s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	sendUntil("before any outage")

	for _, srv := range []struct {
		name string
		p    *testservers.Private
	}{{"ClickHouse", ch}, {"PostgreSQL", pg}} {
		srv.p.Stop(t)
		before := acked
		if err := send(); err == nil {
			t.Fatalf("AppendEntries returned nil with %s down", srv.name)
		}
		if acked != before {
			t.Fatal("a failed batch was acked")
		}
		srv.p.Start(t)
		sendUntil("after " + srv.name + " came back")
	}
	for acked < len(es) {
		sendUntil("the rest")
	}

	if seq, hash, err := s.Head(t.Context(), "h"); err != nil || seq != uint64(len(es)) || hash != es[len(es)-1].Hash {
		t.Fatalf("Head = %d %s %v, want %d", seq, hash, err, len(es))
	}
	wantAuditHashes(t, s, es)
	as, err := s.Alerts(t.Context(), storage.AlertFilter{Limit: 1000})
	if err != nil || len(as) != len(es) {
		t.Fatalf("Alerts: %d alerts, %v; want %d", len(as), err, len(es))
	}
}

// BenchmarkAppendEntries measures the ingest ceiling of one store on this machine's
// test servers: consecutive batches of 500 realistic entries of one host, each call
// stored in both servers before it returns.
func BenchmarkAppendEntries(b *testing.B) {
	const per = 500
	ch := testservers.ClickHouse(b)
	s, err := Open(b.Context(), Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: testservers.PostgreSQL(b)})
	if err != nil {
		b.Fatal(err)
	}
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
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		es := next()
		b.StartTimer()
		if err := s.AppendEntries(b.Context(), "bench-host", es); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "entries/s")
}

func TestDropMonthsBefore(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	c := storetest.NewChain()
	var es []batch.Entry
	for _, ts := range []time.Time{
		time.Date(2026, 1, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	} {
		es = append(es, c.Event(ts, chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityWarn}))
	}
	if err := s.AppendEntries(t.Context(), "h", es); err != nil {
		t.Fatal(err)
	}
	// A cutoff inside March keeps March: only whole months before it go.
	months, err := s.DropMonthsBefore(t.Context(), time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(months, []uint32{202601, 202602}) {
		t.Errorf("dropped months %v, want [202601 202602]", months)
	}
	wantAuditHashes(t, s, es[3:])
	if as, err := s.Alerts(t.Context(), storage.AlertFilter{}); err != nil || len(as) != 1 || as[0].Seq != 4 {
		t.Errorf("Alerts after retention = %+v, %v; want seq 4 only", as, err)
	}
	if n := chCount(t, s, "SELECT count() FROM entries"); n != 1 {
		t.Errorf("ClickHouse holds %d rows after retention, want 1", n)
	}
	// The head stays: the host's chain must still continue from seq 4.
	if seq, _, err := s.Head(t.Context(), "h"); err != nil || seq != 4 {
		t.Errorf("Head after retention = %d, %v; want 4", seq, err)
	}
	// Nothing more to drop.
	if months, err := s.DropMonthsBefore(t.Context(), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)); err != nil || len(months) != 0 {
		t.Errorf("second run dropped %v (%v), want nothing", months, err)
	}
}

type recorder struct {
	cols []storage.Column
	rows [][]any
}

func (r *recorder) Columns(cols []storage.Column) error { r.cols = cols; return nil }
func (r *recorder) Row(v []any) error {
	r.rows = append(r.rows, slices.Clone(v))
	return nil
}

// TestQueryRefusedByReadonly checks that ClickHouse itself refuses, under readonly=1,
// each statement that would write, change a setting or touch a file, and that nothing
// changed.
func TestQueryRefusedByReadonly(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	c := storetest.NewChain()
	if err := s.AppendEntries(t.Context(), "h", []batch.Entry{c.Event(time.Unix(1, 0), chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityInfo})}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"INSERT INTO entries (host_id, seq) VALUES ('x', 9)",
		"INSERT INTO entries (host_id, seq) SELECT host_id, seq + 1 FROM entries",
		"ALTER TABLE entries DELETE WHERE 1",
		"ALTER TABLE entries UPDATE kind = 'x' WHERE 1",
		"ALTER TABLE entries DROP PARTITION 197001",
		"DROP TABLE entries",
		"TRUNCATE TABLE entries",
		"CREATE TABLE intruder (x UInt8) ENGINE = Memory",
		"CREATE DATABASE intruder",
		"RENAME TABLE entries TO gone",
		"SET readonly = 0",
		"SELECT * FROM file('/etc/passwd', 'TSV', 'line String')",
		"SELECT * FROM url('http://127.0.0.1:1/', 'TSV', 'line String')",
		"SELECT 1 SETTINGS readonly = 0",
		"OPTIMIZE TABLE entries FINAL",
	} {
		var r recorder
		if _, _, err := s.Query(t.Context(), q, 10, &r); !errors.Is(err, storage.ErrQueryRefused) {
			t.Errorf("%s: %v, want an error wrapping storage.ErrQueryRefused", q, err)
		}
	}
	if n := chCount(t, s, "SELECT count() FROM entries"); n != 1 {
		t.Errorf("entries after refused statements: %d, want 1", n)
	}
}

// TestQueryStreams checks what Query gives a RowWriter over ClickHouse: column types as
// ClickHouse names them, values ready for JSON (DateTime as RFC 3339, NULL as nil), and
// an error the server raises after rows were sent, with those rows passed on.
func TestQueryStreams(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	var r recorder
	n, truncated, err := s.Query(t.Context(), `SELECT toUInt64(1) AS i, 'x' AS s, toDateTime('2026-01-02 03:04:05', 'UTC') AS t,
		CAST(NULL AS Nullable(String)) AS z, [1, 2] AS l`, 5, &r)
	if err != nil || n != 1 || truncated {
		t.Fatalf("Query = %d %v %v", n, truncated, err)
	}
	if got := fmt.Sprint(r.cols); got != "[{i UInt64} {s String} {t DateTime('UTC')} {z Nullable(String)} {l Array(UInt8)}]" {
		t.Errorf("columns = %s", got)
	}
	if got := fmt.Sprint(r.rows[0]); got != "[1 x 2026-01-02T03:04:05Z <nil> [1 2]]" {
		t.Errorf("row = %s", got)
	}
	r = recorder{}
	n, truncated, err = s.Query(t.Context(), "SELECT number FROM system.numbers LIMIT 100000", 1000, &r)
	if err != nil || n != 1000 || !truncated || len(r.rows) != 1000 {
		t.Errorf("max rows 1000 of 100000: %d rows, truncated %v, %v", n, truncated, err)
	}
	r = recorder{}
	_, _, err = s.Query(t.Context(), "SELECT number, throwIf(number >= 300000) FROM system.numbers LIMIT 400000", 1_000_000, &r)
	if err == nil || errors.Is(err, storage.ErrQueryRefused) || len(r.rows) == 0 {
		t.Errorf("an error after rows: %d rows, %v; want rows then a (non-refusal) error", len(r.rows), err)
	}
}

// pgMigrations is the number of PostgreSQL migrations this build has.
// pgLatest is the highest PostgreSQL migration version: versions may have gaps (each
// change takes its own number), so it is not the number of files.
func pgLatest(t *testing.T) int {
	t.Helper()
	ms, err := storage.LoadMigrations(pgschema.Migrations)
	if err != nil || len(ms) == 0 {
		t.Fatalf("loading PostgreSQL migrations: %v", err)
	}
	return ms[len(ms)-1].Version
}

func pgMigrations(t *testing.T) int {
	t.Helper()
	files, err := fs.Glob(pgschema.Migrations, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("listing PostgreSQL migrations: %v", err)
	}
	return len(files)
}
