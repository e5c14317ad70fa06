package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
)

// AppendEntries stores entries of one host: durable in both ClickHouse and PostgreSQL
// when it returns nil. An entry whose (host_id, seq) is already held is left as it is,
// and so is the second of two entries with one seq in the same call.
//
// In one PostgreSQL transaction holding the host's advisory lock: read the chain head
// and which of the entries are held; insert the others into ClickHouse (one columnar
// batch); record them in chain_entries and alerts; move the head; commit. The lock makes
// "not held, so write it" safe across collectors.
func (s *Store) AppendEntries(ctx context.Context, hostID string, entries []batch.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := storage.ValidateEntries(hostID, entries); err != nil {
		return fmt.Errorf("appending entries of host %q: %w", hostID, err)
	}
	sorted := storage.SortedUnique(entries)
	err := pgx.BeginFunc(ctx, s.pg, func(tx pgx.Tx) error { return s.appendTx(ctx, tx, hostID, sorted) })
	if err != nil {
		return fmt.Errorf("appending entries %d..%d of host %q: %w", sorted[0].Seq, sorted[len(sorted)-1].Seq, hostID, err)
	}
	return nil
}

// hostLock is the advisory lock key of a host's appends.
func hostLock(hostID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("append/" + hostID))
	return int64(h.Sum64())
}

func (s *Store) appendTx(ctx context.Context, tx pgx.Tx, hostID string, sorted []batch.Entry) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", hostLock(hostID)); err != nil {
		return fmt.Errorf("locking the host's chain: %w", err)
	}
	var head, maxSeq int64
	var headHash string
	err := tx.QueryRow(ctx, "SELECT head_seq, head_hash, max_seq FROM chain_heads WHERE host_id = $1", hostID).
		Scan(&head, &headHash, &maxSeq)
	found := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("reading chain head: %w", err)
	}
	// Everything up to the head is held already: a resend costs no insert.
	fresh := sorted[sortedIndex(sorted, uint64(head)+1):]
	if len(fresh) > 0 && uint64(maxSeq) >= fresh[0].Seq {
		// Some entries past a hole may be held.
		if fresh, err = dropHeld(ctx, tx, hostID, fresh); err != nil {
			return err
		}
	}
	if len(fresh) == 0 {
		return nil
	}

	// ClickHouse first: once PostgreSQL records an entry, a resend of it is skipped, so
	// the history must hold it before.
	if err := s.insertHistory(ctx, hostID, fresh); err != nil {
		return err
	}
	if err := insertIndex(ctx, tx, hostID, fresh); err != nil {
		return err
	}

	newHead, newHash := head, headHash
	switch {
	case int64(fresh[0].Seq) != head+1:
		// head+1 is still missing: the head cannot move.
	case maxSeq <= head:
		// Nothing was held past the head, so the batch alone says how far it moves.
		for _, e := range fresh {
			if int64(e.Seq) != newHead+1 {
				break
			}
			newHead, newHash = int64(e.Seq), e.Hash
		}
	default:
		// Entries were held past a hole this batch fills: the run from head+1 ends at
		// the highest seq whose rank among the seqs past head equals seq - head.
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM chain_entries WHERE host_id = $1 AND seq = (
				SELECT max(seq) FROM (
					SELECT seq, seq - row_number() OVER (ORDER BY seq) AS d
					FROM chain_entries WHERE host_id = $1 AND seq > $2
				) AS run WHERE d = $2)`, hostID, head).Scan(&newHead, &newHash)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("finding the end of the contiguous run: %w", err)
		}
	}
	newMax := max(maxSeq, int64(fresh[len(fresh)-1].Seq))
	if found && newHead == head && newMax == maxSeq {
		return nil
	}
	_, err = tx.Exec(ctx, `INSERT INTO chain_heads (host_id, head_seq, head_hash, max_seq, updated_at)
		VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (host_id) DO UPDATE SET head_seq = excluded.head_seq, head_hash = excluded.head_hash,
			max_seq = excluded.max_seq, updated_at = excluded.updated_at`,
		hostID, newHead, newHash, newMax)
	if err != nil {
		return fmt.Errorf("updating chain head: %w", err)
	}
	return nil
}

// dropHeld returns the entries of fresh that chain_entries does not hold.
func dropHeld(ctx context.Context, tx pgx.Tx, hostID string, fresh []batch.Entry) ([]batch.Entry, error) {
	seqs := make([]int64, len(fresh))
	for i, e := range fresh {
		seqs[i] = int64(e.Seq)
	}
	rows, err := tx.Query(ctx, "SELECT seq FROM chain_entries WHERE host_id = $1 AND seq = ANY($2)", hostID, seqs)
	if err != nil {
		return nil, fmt.Errorf("reading held entries: %w", err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("reading held entries: %w", err)
	}
	if len(held) == 0 {
		return fresh, nil
	}
	slices.Sort(held)
	out := make([]batch.Entry, 0, len(fresh)-len(held))
	for _, e := range fresh {
		if _, ok := slices.BinarySearch(held, int64(e.Seq)); !ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// insertHistory writes entries to ClickHouse's entries table as one columnar batch,
// naming every column (ClickHouse 18.16 needs that of the driver).
func (s *Store) insertHistory(ctx context.Context, hostID string, es []batch.Entry) error {
	n := len(es)
	var (
		hosts    = make([]string, n)
		seqs     = make([]uint64, n)
		ts       = make([]int64, n)
		months   = make([]uint32, n)
		kinds    = make([]string, n)
		types    = make([]string, n)
		rules    = make([]string, n)
		sevs     = make([]string, n)
		prevs    = make([]string, n)
		hashes   = make([]string, n)
		payloads = make([]string, n)
		received = make([]time.Time, n)
		now      = time.Now().UTC().Truncate(time.Second)
	)
	for i := range es {
		e := &es[i]
		u := e.Time.UTC()
		hosts[i], seqs[i], ts[i], months[i] = hostID, e.Seq, e.Time.UnixNano(), uint32(u.Year()*100+int(u.Month()))
		kinds[i], types[i], rules[i], sevs[i] = e.Kind, e.Type, e.Rule, e.Severity
		prevs[i], hashes[i], payloads[i], received[i] = e.PrevHash, e.Hash, string(e.Payload), now
	}
	ctx, cancel := context.WithTimeout(ctx, clickhouseTimeout)
	defer cancel()
	b, err := s.ch.PrepareBatch(ctx, `INSERT INTO entries
		(host_id, seq, ts, month, kind, tripwire_type, rule_name, severity, prev_hash, hash, payload, received_at)`)
	if err != nil {
		return fmt.Errorf("writing history to ClickHouse: %w", err)
	}
	for i, col := range []any{hosts, seqs, ts, months, kinds, types, rules, sevs, prevs, hashes, payloads, received} {
		if err := b.Column(i).Append(col); err != nil {
			return errors.Join(fmt.Errorf("writing history to ClickHouse: column %d: %w", i, err), b.Abort())
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("writing history to ClickHouse: %w", err)
	}
	return nil
}

// insertIndex records entries in chain_entries, and their alerts in alerts.
func insertIndex(ctx context.Context, tx pgx.Tx, hostID string, es []batch.Entry) error {
	var seqs, ts, aSeqs, aTS []int64
	var kinds, hashes, aIDs, aTypes, aRules, aSevs []string
	for _, e := range es {
		seqs, ts, kinds, hashes = append(seqs, int64(e.Seq)), append(ts, e.Time.UnixNano()), append(kinds, e.Kind), append(hashes, e.Hash)
		if e.Kind == string(chain.KindEvent) {
			aIDs, aSeqs, aTS = append(aIDs, storage.AlertID(hostID, e.Seq)), append(aSeqs, int64(e.Seq)), append(aTS, e.Time.UnixNano())
			aTypes, aRules, aSevs = append(aTypes, e.Type), append(aRules, e.Rule), append(aSevs, e.Severity)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO chain_entries (host_id, seq, ts_ns, kind, hash, received_at)
		SELECT $1, u.seq, u.ts_ns, u.kind, u.hash, now()
		FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS u (seq, ts_ns, kind, hash)
		ON CONFLICT (host_id, seq) DO NOTHING`, hostID, seqs, ts, kinds, hashes); err != nil {
		return fmt.Errorf("recording entries in PostgreSQL: %w", err)
	}
	if len(aIDs) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO alerts (alert_id, host_id, seq, ts_ns, received_at, tripwire_type, rule_name, severity)
		SELECT u.alert_id, $1, u.seq, u.ts_ns, now(), NULLIF(u.type, ''), NULLIF(u.rule, ''), NULLIF(u.severity, '')
		FROM unnest($2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[])
			AS u (alert_id, seq, ts_ns, type, rule, severity)
		ON CONFLICT DO NOTHING`, hostID, aIDs, aSeqs, aTS, aTypes, aRules, aSevs); err != nil {
		return fmt.Errorf("recording alerts in PostgreSQL: %w", err)
	}
	return nil
}

// sortedIndex returns the index of the first entry with seq >= seq.
func sortedIndex(sorted []batch.Entry, seq uint64) int {
	i, _ := slices.BinarySearchFunc(sorted, seq, func(e batch.Entry, s uint64) int { return cmp.Compare(e.Seq, s) })
	return i
}
