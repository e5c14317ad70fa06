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
// Calls made at the same time, by the streams of many hosts, are written together
// (writer.go): one PostgreSQL transaction holding the advisory lock of every host in
// the group reads their chain heads and which of the entries are held, inserts the others
// into ClickHouse as one columnar batch, records them in chain_entries and alerts, moves
// the heads and commits; then every call of the group returns. The locks make "not
// held, so write it" safe across collectors.
func (s *Store) AppendEntries(ctx context.Context, hostID string, entries []batch.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := storage.ValidateEntries(hostID, entries); err != nil {
		return fmt.Errorf("appending entries of host %q: %w", hostID, err)
	}
	sorted := storage.SortedUnique(entries)
	if err := s.w.append(ctx, hostID, sorted); err != nil {
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

// hostAppend is one host's part of a group write.
type hostAppend struct {
	hostID string
	sorted []batch.Entry // in seq order, one per seq
	fresh  []batch.Entry // of sorted, those not held: what is written

	found        bool // the host has a chain_heads row
	head, maxSeq int64
	headHash     string
}

// groupStats is what a group write tells the metrics: ClickHouse's share of its time,
// whether ClickHouse failed it, and how many entries it wrote.
type groupStats struct {
	clickhouse time.Duration
	chFailed   bool
	entries    int
}

// groupTx writes a group of hosts' entries in tx, noting in st what it did.
func (s *Store) groupTx(ctx context.Context, tx pgx.Tx, hosts []*hostAppend, st *groupStats) error {
	// Locks in ascending key order, the same in every collector: two groups sharing hosts
	// wait for each other instead of deadlocking. unnest yields the array in order.
	keys := make([]int64, len(hosts))
	for i, h := range hosts {
		keys[i] = hostLock(h.hostID)
	}
	slices.Sort(keys)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", slices.Compact(keys)); err != nil {
		return fmt.Errorf("locking the hosts' chains: %w", err)
	}
	if err := readHeads(ctx, tx, hosts); err != nil {
		return err
	}
	var probe []*hostAppend
	for _, h := range hosts {
		// Everything up to the head is held already: a resend costs no insert.
		h.fresh = h.sorted[sortedIndex(h.sorted, uint64(h.head)+1):]
		if len(h.fresh) > 0 && uint64(h.maxSeq) >= h.fresh[0].Seq {
			probe = append(probe, h) // some entries past a hole may be held
		}
	}
	if err := dropHeld(ctx, tx, probe); err != nil {
		return err
	}
	var writes []*hostAppend
	for _, h := range hosts {
		if len(h.fresh) > 0 {
			writes = append(writes, h)
		}
	}
	if len(writes) == 0 {
		return nil
	}
	// ClickHouse first: once PostgreSQL records an entry, a resend of it is skipped, so
	// the history must hold it before.
	started := time.Now()
	err := s.insertHistory(ctx, writes)
	st.clickhouse, st.chFailed = time.Since(started), err != nil
	if err != nil {
		return err
	}
	for _, h := range writes {
		st.entries += len(h.fresh)
	}
	if err := insertIndex(ctx, tx, writes); err != nil {
		return err
	}
	return moveHeads(ctx, tx, writes)
}

// readHeads reads the chain head of each host (0 and no row for a new host).
func readHeads(ctx context.Context, tx pgx.Tx, hosts []*hostAppend) error {
	ids := make([]string, len(hosts))
	byID := make(map[string]*hostAppend, len(hosts))
	for i, h := range hosts {
		ids[i], byID[h.hostID] = h.hostID, h
	}
	rows, err := tx.Query(ctx, "SELECT host_id, head_seq, head_hash, max_seq FROM chain_heads WHERE host_id = ANY($1)", ids)
	if err != nil {
		return fmt.Errorf("reading chain heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, hash string
		var head, maxSeq int64
		if err := rows.Scan(&id, &head, &hash, &maxSeq); err != nil {
			return fmt.Errorf("reading chain heads: %w", err)
		}
		if h := byID[id]; h != nil {
			h.found, h.head, h.headHash, h.maxSeq = true, head, hash, maxSeq
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading chain heads: %w", err)
	}
	return nil
}

// dropHeld removes from each host's fresh entries those chain_entries holds.
func dropHeld(ctx context.Context, tx pgx.Tx, hosts []*hostAppend) error {
	if len(hosts) == 0 {
		return nil
	}
	var ids []string
	var seqs []int64
	for _, h := range hosts {
		for _, e := range h.fresh {
			ids, seqs = append(ids, h.hostID), append(seqs, int64(e.Seq))
		}
	}
	rows, err := tx.Query(ctx, `SELECT c.host_id, c.seq FROM chain_entries AS c
		JOIN unnest($1::text[], $2::bigint[]) AS u (host_id, seq) ON c.host_id = u.host_id AND c.seq = u.seq`, ids, seqs)
	if err != nil {
		return fmt.Errorf("reading held entries: %w", err)
	}
	held := map[string][]int64{}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return fmt.Errorf("reading held entries: %w", err)
		}
		held[id] = append(held[id], seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading held entries: %w", err)
	}
	for _, h := range hosts {
		hs := held[h.hostID]
		if len(hs) == 0 {
			continue
		}
		slices.Sort(hs)
		out := make([]batch.Entry, 0, len(h.fresh)-len(hs))
		for _, e := range h.fresh {
			if _, ok := slices.BinarySearch(hs, int64(e.Seq)); !ok {
				out = append(out, e)
			}
		}
		h.fresh = out
	}
	return nil
}

// moveHeads moves each host's chain head as far as its entries now run contiguously,
// and records the highest seq held.
func moveHeads(ctx context.Context, tx pgx.Tx, hosts []*hostAppend) error {
	var ids, hashes []string
	var heads, maxes []int64
	for _, h := range hosts {
		newHead, newHash := h.head, h.headHash
		switch {
		case int64(h.fresh[0].Seq) != h.head+1:
			// head+1 is still missing: the head cannot move.
		case h.maxSeq <= h.head:
			// Nothing was held past the head, so the batch alone says how far it moves.
			for _, e := range h.fresh {
				if int64(e.Seq) != newHead+1 {
					break
				}
				newHead, newHash = int64(e.Seq), e.Hash
			}
		default:
			// Entries were held past a hole this batch fills: the run from head+1 ends
			// at the highest seq whose rank among the seqs past head equals seq - head.
			err := tx.QueryRow(ctx, `SELECT seq, hash FROM chain_entries WHERE host_id = $1 AND seq = (
					SELECT max(seq) FROM (
						SELECT seq, seq - row_number() OVER (ORDER BY seq) AS d
						FROM chain_entries WHERE host_id = $1 AND seq > $2
					) AS run WHERE d = $2)`, h.hostID, h.head).Scan(&newHead, &newHash)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("finding the end of the contiguous run of host %q: %w", h.hostID, err)
			}
		}
		newMax := max(h.maxSeq, int64(h.fresh[len(h.fresh)-1].Seq))
		if h.found && newHead == h.head && newMax == h.maxSeq {
			continue
		}
		ids, heads, hashes, maxes = append(ids, h.hostID), append(heads, newHead), append(hashes, newHash), append(maxes, newMax)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO chain_heads (host_id, head_seq, head_hash, max_seq, updated_at)
		SELECT u.host_id, u.head_seq, u.head_hash, u.max_seq, now()
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS u (host_id, head_seq, head_hash, max_seq)
		ON CONFLICT (host_id) DO UPDATE SET head_seq = excluded.head_seq, head_hash = excluded.head_hash,
			max_seq = excluded.max_seq, updated_at = excluded.updated_at`,
		ids, heads, hashes, maxes)
	if err != nil {
		return fmt.Errorf("updating chain heads: %w", err)
	}
	return nil
}

// insertHistory writes the hosts' fresh entries to ClickHouse's entries table as one
// columnar batch, naming every column (ClickHouse 18.16 needs that of the driver): one
// insert, so one new part per month touched, whatever the number of hosts.
func (s *Store) insertHistory(ctx context.Context, hosts []*hostAppend) error {
	n := 0
	for _, h := range hosts {
		n += len(h.fresh)
	}
	var (
		hostIDs  = make([]string, 0, n)
		seqs     = make([]uint64, 0, n)
		ts       = make([]int64, 0, n)
		months   = make([]uint32, 0, n)
		kinds    = make([]string, 0, n)
		types    = make([]string, 0, n)
		rules    = make([]string, 0, n)
		sevs     = make([]string, 0, n)
		prevs    = make([]string, 0, n)
		hashes   = make([]string, 0, n)
		payloads = make([]string, 0, n)
		received = make([]time.Time, 0, n)
		now      = time.Now().UTC().Truncate(time.Second)
	)
	for _, h := range hosts {
		for i := range h.fresh {
			e := &h.fresh[i]
			u := e.Time.UTC()
			hostIDs, seqs, ts = append(hostIDs, h.hostID), append(seqs, e.Seq), append(ts, e.Time.UnixNano())
			months = append(months, uint32(u.Year()*100+int(u.Month())))
			kinds, types, rules, sevs = append(kinds, e.Kind), append(types, e.Type), append(rules, e.Rule), append(sevs, e.Severity)
			prevs, hashes, payloads, received = append(prevs, e.PrevHash), append(hashes, e.Hash), append(payloads, string(e.Payload)), append(received, now)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, clickhouseTimeout)
	defer cancel()
	b, err := s.ch.PrepareBatch(ctx, `INSERT INTO entries
		(host_id, seq, ts, month, kind, tripwire_type, rule_name, severity, prev_hash, hash, payload, received_at)`)
	if err != nil {
		return fmt.Errorf("writing history to ClickHouse: %w", err)
	}
	for i, col := range []any{hostIDs, seqs, ts, months, kinds, types, rules, sevs, prevs, hashes, payloads, received} {
		if err := b.Column(i).Append(col); err != nil {
			return errors.Join(fmt.Errorf("writing history to ClickHouse: column %d: %w", i, err), b.Abort())
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("writing history to ClickHouse: %w", err)
	}
	return nil
}

// insertIndex records the hosts' fresh entries in chain_entries, and their alerts in
// alerts, one statement each for the whole group.
func insertIndex(ctx context.Context, tx pgx.Tx, hosts []*hostAppend) error {
	var ids, aIDs, aHosts []string
	var seqs, ts, aSeqs, aTS []int64
	var kinds, hashes, aTypes, aRules, aSevs []string
	for _, h := range hosts {
		for _, e := range h.fresh {
			ids, seqs, ts = append(ids, h.hostID), append(seqs, int64(e.Seq)), append(ts, e.Time.UnixNano())
			kinds, hashes = append(kinds, e.Kind), append(hashes, e.Hash)
			if e.Kind == string(chain.KindEvent) {
				aIDs, aHosts, aSeqs, aTS = append(aIDs, storage.AlertID(h.hostID, e.Seq)), append(aHosts, h.hostID), append(aSeqs, int64(e.Seq)), append(aTS, e.Time.UnixNano())
				aTypes, aRules, aSevs = append(aTypes, e.Type), append(aRules, e.Rule), append(aSevs, e.Severity)
			}
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO chain_entries (host_id, seq, ts_ns, kind, hash, received_at)
		SELECT u.host_id, u.seq, u.ts_ns, u.kind, u.hash, now()
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS u (host_id, seq, ts_ns, kind, hash)
		ON CONFLICT (host_id, seq) DO NOTHING`, ids, seqs, ts, kinds, hashes); err != nil {
		return fmt.Errorf("recording entries in PostgreSQL: %w", err)
	}
	if len(aIDs) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO alerts (alert_id, host_id, seq, ts_ns, received_at, tripwire_type, rule_name, severity)
		SELECT u.alert_id, u.host_id, u.seq, u.ts_ns, now(), NULLIF(u.type, ''), NULLIF(u.rule, ''), NULLIF(u.severity, '')
		FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[])
			AS u (alert_id, host_id, seq, ts_ns, type, rule, severity)
		ON CONFLICT DO NOTHING`, aIDs, aHosts, aSeqs, aTS, aTypes, aRules, aSevs); err != nil {
		return fmt.Errorf("recording alerts in PostgreSQL: %w", err)
	}
	return nil
}

// sortedIndex returns the index of the first entry with seq >= seq.
func sortedIndex(sorted []batch.Entry, seq uint64) int {
	i, _ := slices.BinarySearchFunc(sorted, seq, func(e batch.Entry, s uint64) int { return cmp.Compare(e.Seq, s) })
	return i
}
