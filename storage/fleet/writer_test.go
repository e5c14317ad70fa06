package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// openWriters opens a store on new databases with the given number of writers.
func openWriters(t *testing.T, writers int) *Store {
	t.Helper()
	ch := testservers.ClickHouse(t)
	s, err := Open(t.Context(), Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: testservers.PostgreSQL(t), Writers: writers})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eventually polls cond every 10 ms for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// holdWriter makes the store's only writer wait: it takes a call of host "blocker"
// whose chain lock another PostgreSQL session holds. The returned function releases it
// and waits for that call, which must succeed.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	conn, err := s.pg.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_lock($1)", hostLock("blocker")); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock := func() {
		once.Do(func() {
			if _, err := conn.Exec(context.WithoutCancel(t.Context()), "SELECT pg_advisory_unlock($1)", hostLock("blocker")); err != nil {
				t.Error(err)
			}
			conn.Release()
		})
	}
	// A test that fails while holding it still lets the store close.
	t.Cleanup(unlock)
	before := s.w.groups.Load()
	done := make(chan error, 1)
	go func() { done <- s.AppendEntries(context.WithoutCancel(t.Context()), "blocker", chainOf(1)) }()
	eventually(t, "the writer taking the blocker's call", func() bool { return s.w.groups.Load() == before+1 })
	return func() {
		t.Helper()
		unlock()
		if err := <-done; err != nil {
			t.Fatalf("the blocker's call: %v", err)
		}
	}
}

// TestGroupWrite checks that calls made while the writer is busy are written as one
// group, and that each returns only once its entries are held.
func TestGroupWrite(t *testing.T) {
	s := openWriters(t, 1)
	release := holdWriter(t, s)
	const hosts, per = 20, 7
	var g errgroup.Group
	for i := range hosts {
		g.Go(func() error { return s.AppendEntries(t.Context(), fmt.Sprintf("h%02d", i), chainOf(per)) })
	}
	eventually(t, "every call queued", func() bool { return s.w.queued() == hosts })
	release()
	if err := g.Wait(); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	if n := s.w.groups.Load(); n != 2 {
		t.Errorf("%d group writes, want 2: the blocker's, then the %d queued calls together", n, hosts)
	}
	for i := range hosts {
		h := fmt.Sprintf("h%02d", i)
		if seq, hash, err := s.Head(t.Context(), h); err != nil || seq != per || hash != chainOf(per)[per-1].Hash {
			t.Errorf("Head(%s) = %d %s %v, want %d", h, seq, hash, err, per)
		}
	}
	if n := chCount(t, s, "SELECT count() FROM entries"); n != hosts*per+1 {
		t.Errorf("ClickHouse holds %d rows, want %d", n, hosts*per+1)
	}
	if n := pgCount(t, s, "SELECT count(*) FROM alerts"); n != hosts*per+1 {
		t.Errorf("PostgreSQL holds %d alerts, want %d", n, hosts*per+1)
	}
}

// TestGroupMergesCallsOfOneHost checks that calls of one host in a group are written
// as if made one after the other: overlapping seqs stored once, and for a seq sent
// twice with different content, the first call's entry kept.
func TestGroupMergesCallsOfOneHost(t *testing.T) {
	s := openWriters(t, 1)
	es := chainOf(15)
	forged := storetest.NewChain()
	var fs []batch.Entry
	for i := range 4 {
		fs = append(fs, forged.Event(time.Unix(int64(100+i), 0), chain.Event{Type: chain.TypeProcess, Rule: "forged", Severity: chain.SeverityInfo}))
	}
	release := holdWriter(t, s)
	var g errgroup.Group
	for i, call := range [][]batch.Entry{es[:10], es[4:], fs[2:]} {
		g.Go(func() error { return s.AppendEntries(t.Context(), "h", call) })
		eventually(t, "the call queued", func() bool { return s.w.queued() == i+1 })
	}
	release()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	au, err := s.Audit(t.Context(), storage.AuditFilter{Host: "h", Limit: 100})
	if err != nil || len(au) != len(es) {
		t.Fatalf("Audit(h) = %d entries, %v; want %d", len(au), err, len(es))
	}
	for i, e := range es {
		if au[i].Seq != e.Seq || au[i].Hash != e.Hash || au[i].Payload != string(e.Payload) {
			t.Errorf("entry %d: seq %d hash %s, want seq %d hash %s (the first call's)", i, au[i].Seq, au[i].Hash, e.Seq, e.Hash)
		}
	}
	if seq, _, err := s.Head(t.Context(), "h"); err != nil || seq != 15 {
		t.Errorf("Head = %d, %v; want 15", seq, err)
	}
	if n := chCount(t, s, "SELECT count() FROM entries WHERE host_id = 'h'"); n != 15 {
		t.Errorf("ClickHouse holds %d rows of h, want 15", n)
	}
}

// TestGroupRefusedCallFailsAlone checks that a call PostgreSQL refuses fails alone: the
// other calls of its group are stored.
func TestGroupRefusedCallFailsAlone(t *testing.T) {
	s := openWriters(t, 1)
	pgExec(t, s, "ALTER TABLE chain_entries ADD CONSTRAINT no_poison CHECK (host_id <> 'poison')")
	release := holdWriter(t, s)
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range []string{"a", "poison", "b"} {
		wg.Go(func() {
			err := s.AppendEntries(t.Context(), h, chainOf(3))
			mu.Lock()
			errs[h] = err
			mu.Unlock()
		})
	}
	eventually(t, "every call queued", func() bool { return s.w.queued() == 3 })
	release()
	wg.Wait()
	var pgErr *pgconn.PgError
	if err := errs["poison"]; !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Errorf("the refused call returned %v, want the check violation", err)
	}
	for _, h := range []string{"a", "b"} {
		if errs[h] != nil {
			t.Errorf("call of %s in the refused call's group: %v", h, errs[h])
		}
		if seq, _, err := s.Head(t.Context(), h); err != nil || seq != 3 {
			t.Errorf("Head(%s) = %d, %v; want 3", h, seq, err)
		}
	}
	if seq, _, err := s.Head(t.Context(), "poison"); err != nil || seq != 0 {
		t.Errorf("Head(poison) = %d, %v; want 0", seq, err)
	}
}

// TestGroupCallerGivesUp checks that a caller whose context ends while its call waits
// gets the context's error at once, and that nothing is written for it.
func TestGroupCallerGivesUp(t *testing.T) {
	s := openWriters(t, 1)
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.AppendEntries(ctx, "gone", chainOf(2)) }()
	eventually(t, "the call queued", func() bool { return s.w.queued() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("AppendEntries = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AppendEntries did not return after its context ended")
	}
	release()
	// The next group holds a call that follows the given-up one in the queue.
	if err := s.AppendEntries(t.Context(), "other", chainOf(1)); err != nil {
		t.Fatal(err)
	}
	if n := pgCount(t, s, "SELECT count(*) FROM chain_entries WHERE host_id = 'gone'"); n != 0 {
		t.Errorf("%d entries of the given-up call stored, want 0", n)
	}
}

// TestTwoStoresShareHosts runs two stores on the same databases, as two collectors
// are, each taking the same hosts' batches at once (an agent resending to another
// replica, or two agents sharing a certificate): groups that share hosts wait for one
// another rather than deadlock, and every entry is stored once.
func TestTwoStoresShareHosts(t *testing.T) {
	ch := testservers.ClickHouse(t)
	o := Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: testservers.PostgreSQL(t), Writers: 3}
	var stores [2]*Store
	for i := range stores {
		s, err := Open(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	const hosts, batches, per = 12, 6, 20
	chains := make([][]batch.Entry, hosts)
	for h := range chains {
		chains[h] = chainOf(batches * per)
	}
	var g errgroup.Group
	for _, s := range stores {
		for h := range hosts {
			g.Go(func() error {
				for b := range batches {
					if err := s.AppendEntries(t.Context(), fmt.Sprintf("h%02d", h), chains[h][b*per:(b+1)*per]); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	s := stores[0]
	for h := range hosts {
		id := fmt.Sprintf("h%02d", h)
		if seq, hash, err := s.Head(t.Context(), id); err != nil || seq != batches*per || hash != chains[h][batches*per-1].Hash {
			t.Errorf("Head(%s) = %d, %v; want %d", id, seq, err, batches*per)
		}
	}
	if n := pgCount(t, s, "SELECT count(*) FROM chain_entries"); n != hosts*batches*per {
		t.Errorf("chain_entries holds %d, want %d", n, hosts*batches*per)
	}
	if n := chCount(t, s, "SELECT uniqExact(host_id, seq) FROM entries"); n != hosts*batches*per {
		t.Errorf("ClickHouse holds %d distinct entries, want %d", n, hosts*batches*per)
	}
	au, err := s.Audit(t.Context(), storage.AuditFilter{Host: "h03", Limit: 1000})
	if err != nil || len(au) != batches*per {
		t.Fatalf("Audit(h03) = %d entries, %v", len(au), err)
	}
}

// TestCloseLeavesNoGoroutines checks that Close stops the writers and the pools'
// goroutines.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	ch, dsn := testservers.ClickHouse(t), testservers.PostgreSQL(t)
	before := goleak.IgnoreCurrent()
	s, err := Open(t.Context(), Options{ClickHouseAddr: ch.Addr, ClickHouseDatabase: ch.Database, PostgresDSN: dsn, Writers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEntries(t.Context(), "h", chainOf(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEntries(t.Context(), "h", chainOf(4)); !errors.Is(err, errClosed) {
		t.Errorf("AppendEntries after Close = %v, want errClosed", err)
	}
	goleak.VerifyNone(t, before)
}
