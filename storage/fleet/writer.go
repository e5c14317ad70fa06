package fleet

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/storage"
)

// The write path (docs/adr/0015-fleet-write-path.md). Each agent stream stores one batch
// at a time, so a collector serving many agents makes many small AppendEntries calls at
// once. Written one by one, each is a ClickHouse insert, which makes a part that
// ClickHouse must merge (18.16 refuses inserts past 300 parts in a partition and slows
// them well before), and a PostgreSQL transaction with a commit to sync. The writer
// queues the calls instead: each of a few workers takes every call queued when it is
// free (up to maxGroupRows entries) and writes them as one group, one ClickHouse insert
// and one PostgreSQL transaction, then answers every call of the group. Under light load
// a call is a group of its own and waits for nothing; under heavy load the groups grow
// and the number of inserts and commits stays about constant.

const (
	// defaultWriters is how many groups are written at once unless Options.Writers says
	// otherwise: enough that ClickHouse's insert of one group overlaps PostgreSQL's
	// transaction of another, few enough to keep the parts made per second low.
	defaultWriters = 4
	// maxGroupRows bounds the entries of one group (a call larger than this is a group
	// of its own): about 30 MB of payloads, well under the store's timeouts.
	maxGroupRows = 65536
	// groupTimeout bounds a group write, so that a server that stops answering fails
	// the calls rather than holding them and the hosts' locks.
	groupTimeout = 2 * clickhouseTimeout
)

// errClosed is returned by calls made after Close.
var errClosed = errors.New("the store is closed")

// writer merges concurrent appends into group writes. It is safe for concurrent use.
type writer struct {
	s      *Store
	logger *slog.Logger
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	signal chan struct{} // holds a value while calls are queued and a worker may be idle

	mu     sync.Mutex
	queue  []*appendCall
	closed bool

	// groups counts the group writes begun (including a refused group's calls written
	// again one by one), for tests.
	groups atomic.Uint64
}

// appendCall is one AppendEntries call waiting for its group.
type appendCall struct {
	ctx    context.Context
	hostID string
	sorted []batch.Entry
	done   chan error // buffered: the worker never waits for the caller
}

func newWriter(s *Store, workers int, logger *slog.Logger) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{s: s, logger: logger, ctx: ctx, cancel: cancel, signal: make(chan struct{}, 1)}
	for range workers {
		w.wg.Go(w.run)
	}
	return w
}

// append queues a call and waits until its group is written (nil: durable in both
// stores), or ctx ends. A call whose caller gave up may still be written: it was not
// acknowledged, and a resend of it is stored once.
func (w *writer) append(ctx context.Context, hostID string, sorted []batch.Entry) error {
	c := &appendCall{ctx: ctx, hostID: hostID, sorted: sorted, done: make(chan error, 1)}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errClosed
	}
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	w.poke()
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *writer) poke() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// close stops the workers once their groups are written, and fails queued calls.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	queued := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, c := range queued {
		c.done <- errClosed
	}
	w.cancel()
	w.wg.Wait()
}

func (w *writer) run() {
	for {
		calls := w.take()
		if len(calls) == 0 {
			select {
			case <-w.ctx.Done():
				return
			case <-w.signal:
			}
			continue
		}
		w.write(calls)
	}
}

// take removes from the queue the calls of the next group: every call queued, up to
// maxGroupRows entries (at least one call).
func (w *writer) take() []*appendCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, rows := 0, 0
	for n < len(w.queue) && (n == 0 || rows+len(w.queue[n].sorted) <= maxGroupRows) {
		rows += len(w.queue[n].sorted)
		n++
	}
	calls := slices.Clone(w.queue[:n])
	w.queue = slices.Delete(w.queue, 0, n)
	if len(w.queue) > 0 {
		w.poke() // more than one group's worth: another worker may be idle
	}
	return calls
}

// write writes calls as one group and answers each. A group PostgreSQL refuses for what
// it holds (a data or constraint error, which one call may cause) is written again call
// by call, so that such a call fails alone; any other error, such as a server down,
// fails the whole group, whose calls are resent by their agents.
func (w *writer) write(calls []*appendCall) {
	live := calls[:0]
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.done <- err // the caller has gone: nothing to write for it
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	err := w.writeGroup(live)
	if err != nil && len(live) > 1 && refusedForData(err) {
		w.logger.Warn("PostgreSQL refused a group of appends: writing its calls one by one", "calls", len(live), "err", err)
		for _, c := range live {
			c.done <- w.writeGroup([]*appendCall{c})
		}
		return
	}
	for _, c := range live {
		c.done <- err
	}
}

// writeGroup writes the entries of calls in one transaction. Calls of one host are
// merged in the order they were made: for a seq in two of them, the first call's entry
// is the one written, as if the calls had been made one after the other.
func (w *writer) writeGroup(calls []*appendCall) error {
	var hosts []*hostAppend
	byID := map[string]*hostAppend{}
	for _, c := range calls {
		h := byID[c.hostID]
		if h == nil {
			h = &hostAppend{hostID: c.hostID, sorted: c.sorted}
			byID[c.hostID] = h
			hosts = append(hosts, h)
			continue
		}
		h.sorted = storage.SortedUnique(append(slices.Clip(h.sorted), c.sorted...))
	}
	w.groups.Add(1)
	ctx, cancel := context.WithTimeout(w.ctx, groupTimeout)
	defer cancel()
	var st groupStats
	started := time.Now()
	err := pgx.BeginFunc(ctx, w.s.pg, func(tx pgx.Tx) error { return w.s.groupTx(ctx, tx, hosts, &st) })
	w.s.metrics.observe(st.entries, st.clickhouse, time.Since(started)-st.clickhouse, st.chFailed, err != nil && !st.chFailed)
	return err
}

// refusedForData reports whether PostgreSQL refused a statement for the data it was
// given (SQLSTATE classes 22, data exception, and 23, integrity constraint violation).
func refusedForData(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}
