package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/storage"
)

// Page sizes of Alerts and Audit.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// RegisterHost creates the host on first sight and updates its session fields after,
// keeping first_seen from the first registration. last_seen never moves backwards. A
// fork's fork_of and fork_seq are written when its row is created and never change.
func (s *Store) RegisterHost(ctx context.Context, h storage.Host) error {
	if h.HostID == "" {
		return errors.New("registering host: empty host id")
	}
	if h.LastSeen.IsZero() {
		h.LastSeen = time.Now()
	}
	if h.FirstSeen.IsZero() {
		h.FirstSeen = h.LastSeen
	}
	_, err := s.pg.Exec(ctx, `INSERT INTO hosts
			(host_id, hostname, os, arch, kernel, agent_version, protocol_version, watchers, first_seen, last_seen, cert_serial, cert_not_after, cert_not_before, fork_of, fork_seq, cert_key_sha256)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT (host_id) DO UPDATE SET
			hostname = excluded.hostname, os = excluded.os, arch = excluded.arch,
			kernel = excluded.kernel, agent_version = excluded.agent_version,
			protocol_version = excluded.protocol_version, watchers = excluded.watchers,
			last_seen = greatest(hosts.last_seen, excluded.last_seen),
			cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after,
			cert_not_before = excluded.cert_not_before, cert_key_sha256 = excluded.cert_key_sha256`,
		h.HostID, h.Hostname, h.OS, h.Arch, h.Kernel, h.AgentVersion, int64(h.ProtocolVersion), h.Watchers,
		h.FirstSeen.UTC(), h.LastSeen.UTC(), h.CertSerial, storage.UTCPtr(h.CertNotAfter), storage.UTCPtr(h.CertNotBefore), nullIfEmpty(h.ForkOf), nullIfZero(h.ForkSeq), h.CertKey)
	if err != nil {
		return fmt.Errorf("registering host %q: %w", h.HostID, err)
	}
	return nil
}

// TouchHost sets the host's last_seen to t, unless it is already later. It returns an
// error wrapping storage.ErrNotFound for a host that never registered.
func (s *Store) TouchHost(ctx context.Context, hostID string, t time.Time) error {
	tag, err := s.pg.Exec(ctx, "UPDATE hosts SET last_seen = greatest(last_seen, $1) WHERE host_id = $2", t.UTC(), hostID)
	if err != nil {
		return fmt.Errorf("touching host %q: %w", hostID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("touching host %q: %w", hostID, storage.ErrNotFound)
	}
	return nil
}

// Head returns the highest seq held contiguously from 1 for the host and its hash, or
// 0 and "" for a host with no entry 1.
func (s *Store) Head(ctx context.Context, hostID string) (uint64, string, error) {
	var seq int64
	var hash string
	err := s.pg.QueryRow(ctx, "SELECT head_seq, head_hash FROM chain_heads WHERE host_id = $1", hostID).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("reading chain head of host %q: %w", hostID, err)
	}
	return uint64(seq), hash, nil
}

// Hosts returns every registered host by name (then id), with its chain head.
func (s *Store) Hosts(ctx context.Context) ([]storage.Host, error) {
	rows, err := s.pg.Query(ctx, `SELECT h.host_id, h.hostname, h.os, h.arch, h.kernel,
			h.agent_version, h.protocol_version, h.watchers, h.first_seen, h.last_seen,
			COALESCE(c.head_seq, 0), h.cert_serial, h.cert_key_sha256, h.cert_not_after, h.cert_not_before, h.status, h.degraded,
			COALESCE(h.fork_of, ''), COALESCE(h.fork_seq, 0)
		FROM hosts AS h LEFT JOIN chain_heads AS c ON c.host_id = h.host_id
		ORDER BY h.hostname, h.host_id`)
	if err != nil {
		return nil, fmt.Errorf("listing hosts: %w", err)
	}
	defer rows.Close()
	var hosts []storage.Host
	for rows.Next() {
		var h storage.Host
		var proto, head, forkSeq int64
		if err := rows.Scan(&h.HostID, &h.Hostname, &h.OS, &h.Arch, &h.Kernel, &h.AgentVersion,
			&proto, &h.Watchers, &h.FirstSeen, &h.LastSeen, &head, &h.CertSerial, &h.CertKey, &h.CertNotAfter, &h.CertNotBefore, &h.Status, &h.Degraded,
			&h.ForkOf, &forkSeq); err != nil {
			return nil, fmt.Errorf("listing hosts: %w", err)
		}
		h.ProtocolVersion, h.HeadSeq, h.ForkSeq = uint32(proto), uint64(head), uint64(forkSeq)
		h.FirstSeen, h.LastSeen, h.CertNotAfter = h.FirstSeen.UTC(), h.LastSeen.UTC(), storage.UTCPtr(h.CertNotAfter)
		h.Status = storage.HostStatus(h.Status, h.Degraded)
		h.CertNotBefore = storage.UTCPtr(h.CertNotBefore)
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing hosts: %w", err)
	}
	return hosts, nil
}

// Alerts returns the alerts matching f, newest first (event time, then seq, then host
// id, all descending; a host event's NULL seq sorts first), with their triage state.
// PostgreSQL's alert index selects and pages them; the payloads of event entries come
// from ClickHouse, and EventDetail is the text of the payload's "event" member, exactly
// as the agent hashed it; a host event's detail is host_events.detail. A Text filter is
// matched in ClickHouse first (textKeys), and PostgreSQL then selects among the entries
// it found, and among the host events whose detail holds the text.
func (s *Store) Alerts(ctx context.Context, f storage.AlertFilter) ([]storage.Alert, error) {
	w, err := s.alertIndexWhere(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("querying alerts: %w", err)
	}
	if f.Text != "" {
		keys, err := s.textKeys(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("querying alerts: %w", err)
		}
		w.add("((a.host_id, a.seq, c.hash) IN (SELECT * FROM unnest($?::text[], $?::bigint[], $?::text[])) OR strpos(lower(he.detail), lower($?)) > 0)",
			keys.hostIDs, keys.seqs, keys.hashes, f.Text)
	}
	limit, offset := page(f.Limit, f.Offset)
	alerts, err := s.alerts(ctx, w.sql()+`
		ORDER BY a.ts_ns DESC, a.seq DESC, a.host_id DESC
		`+w.page(limit, offset), w.args...)
	if err != nil {
		return nil, fmt.Errorf("querying alerts: %w", err)
	}
	return alerts, nil
}

// alertIndexWhere selects in PostgreSQL's alert index (alerts AS a) the alerts matching
// f's host, columns, triage status and time range; Text is left to the caller, which
// matches it where the alert's text is.
func (s *Store) alertIndexWhere(ctx context.Context, f storage.AlertFilter) (where, error) {
	var w where
	if err := s.hostFilter(ctx, &w, "a", f.Host); err != nil {
		return w, err
	}
	for _, c := range [...]struct{ col, v string }{
		{"a.tripwire_type", f.Type}, {"a.severity", f.Severity}, {"a.rule_name", f.Rule}, {"a.status", f.Status},
	} {
		if c.v != "" {
			w.add(c.col+" = $?", c.v)
		}
	}
	w.timeRange("a", f.From, f.To)
	return w, nil
}

// alerts reads the alerts the query's tail (WHERE, ORDER BY, LIMIT over alerts AS a,
// chain_entries AS c, host_events AS he and hosts AS h) selects, with the event details
// of event entries from ClickHouse.
func (s *Store) alerts(ctx context.Context, tail string, args ...any) ([]storage.Alert, error) {
	rows, err := s.pg.Query(ctx, `SELECT a.alert_id::text, COALESCE(h.hostname, he.hostname, ''), a.host_id, a.seq, a.ts_ns,
			COALESCE(a.tripwire_type, ''), COALESCE(a.rule_name, ''), COALESCE(a.severity, ''), c.hash, he.detail,
			a.status, COALESCE(a.status_by, ''), a.status_at, COALESCE(a.status_note, ''), COALESCE(h.fork_of, '')
		FROM alerts AS a
		LEFT JOIN chain_entries AS c ON c.host_id = a.host_id AND c.seq = a.seq
		LEFT JOIN host_events AS he ON a.seq IS NULL AND he.event_id = a.alert_id::text
		LEFT JOIN hosts AS h ON h.host_id = a.host_id
		`+tail, args...)
	if err != nil {
		return nil, err
	}
	var alerts []storage.Alert
	var keys []entryKey
	var fromHistory []int // indexes into alerts of the event entries, in keys' order
	for rows.Next() {
		var a storage.Alert
		var seq *int64
		var ns int64
		var hash, detail *string
		if err := rows.Scan(&a.AlertID, &a.Host, &a.HostID, &seq, &ns, &a.TripwireType, &a.RuleName, &a.Severity, &hash, &detail,
			&a.TriageStatus, &a.TriageBy, &a.TriageAt, &a.TriageNote, &a.ForkOf); err != nil {
			rows.Close()
			return nil, err
		}
		a.Timestamp = time.Unix(0, ns).UTC()
		if a.TriageAt != nil {
			*a.TriageAt = a.TriageAt.UTC()
		}
		switch {
		case seq != nil && hash != nil:
			a.Seq = uint64(*seq)
			fromHistory = append(fromHistory, len(alerts))
			keys = append(keys, entryKey{hostID: a.HostID, seq: a.Seq, hash: *hash, ts: ns})
		case detail != nil:
			a.EventDetail = storage.RawJSON(*detail) // a host event's, as the collector wrote it
		}
		alerts = append(alerts, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	texts, err := s.history(ctx, keys)
	if err != nil {
		return nil, err
	}
	for k, i := range fromHistory {
		alerts[i].EventDetail = s.eventDetail(alerts[i].HostID, alerts[i].Seq, texts[k].payload)
	}
	return alerts, nil
}

// eventDetail returns the text of the payload's "event" member, or nil.
func (s *Store) eventDetail(hostID string, seq uint64, payload string) storage.RawJSON {
	detail, err := storage.EventDetail([]byte(payload))
	if err != nil {
		s.logger.Debug("event payload is not JSON", "host_id", hostID, "seq", seq, "err", err)
	}
	return detail
}

// Audit returns the chain entries matching f in (host_id, seq) order, with their
// payloads exactly as stored. PostgreSQL's index selects and pages them; prev_hash and
// the payload come from ClickHouse.
func (s *Store) Audit(ctx context.Context, f storage.AuditFilter) ([]storage.AuditEntry, error) {
	var w where
	if err := s.hostFilter(ctx, &w, "c", f.Host); err != nil {
		return nil, fmt.Errorf("querying audit entries: %w", err)
	}
	w.timeRange("c", f.From, f.To)
	limit, offset := page(f.Limit, f.Offset)
	rows, err := s.pg.Query(ctx, `SELECT COALESCE(h.hostname, ''), c.host_id, c.seq, c.ts_ns, c.kind, c.hash
		FROM chain_entries AS c LEFT JOIN hosts AS h ON h.host_id = c.host_id
		`+w.sql()+`
		ORDER BY c.host_id, c.seq
		`+w.page(limit, offset), w.args...)
	if err != nil {
		return nil, fmt.Errorf("querying audit entries: %w", err)
	}
	var entries []storage.AuditEntry
	var keys []entryKey
	for rows.Next() {
		var e storage.AuditEntry
		var seq, ns int64
		if err := rows.Scan(&e.Host, &e.HostID, &seq, &ns, &e.Kind, &e.Hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("querying audit entries: %w", err)
		}
		e.Seq, e.Time = uint64(seq), time.Unix(0, ns).UTC()
		entries = append(entries, e)
		keys = append(keys, entryKey{hostID: e.HostID, seq: e.Seq, hash: e.Hash, ts: ns})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying audit entries: %w", err)
	}
	texts, err := s.history(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("querying audit entries: %w", err)
	}
	for i := range entries {
		entries[i].PrevHash, entries[i].Payload = texts[i].prevHash, texts[i].payload
	}
	return entries, nil
}

// entryKey names an entry PostgreSQL holds: the ClickHouse row with this hash is it.
type entryKey struct {
	hostID string
	seq    uint64
	hash   string
	ts     int64 // narrows the ClickHouse read to the partitions and key ranges
}

type entryText struct {
	prevHash, payload string
}

// MissingHistoryError is returned by reads when PostgreSQL holds an entry that
// ClickHouse does not: the history was lost or altered behind the store's back.
type MissingHistoryError struct {
	HostID string
	Seq    uint64
	Hash   string
}

// Error names the entry.
func (e *MissingHistoryError) Error() string {
	return fmt.Sprintf("entry %d of host %q (hash %s) is in PostgreSQL's index but not in ClickHouse's history", e.Seq, e.HostID, e.Hash)
}

// history reads from ClickHouse the texts of the entries named by keys, in keys' order.
// Of the rows of one (host_id, seq), the one with the hash PostgreSQL holds is taken.
func (s *Store) history(ctx context.Context, keys []entryKey) ([]entryText, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	type rowKey struct {
		hostID string
		seq    uint64
		hash   string
	}
	hostSet := map[string]bool{}
	var hostArgs []any
	var seqList strings.Builder
	minTS, maxTS := keys[0].ts, keys[0].ts
	for i, k := range keys {
		if !hostSet[k.hostID] {
			hostSet[k.hostID] = true
			hostArgs = append(hostArgs, k.hostID)
		}
		if i > 0 {
			seqList.WriteString(", ")
		}
		seqList.WriteString(strconv.FormatUint(k.seq, 10))
		minTS, maxTS = min(minTS, k.ts), max(maxTS, k.ts)
	}
	// A superset of the keys (every listed seq of every listed host in the time span),
	// narrowed in Go. Host ids are bound one by one: 18.16 cannot compare a String
	// with the array the driver binds a slice as.
	//
	// PREWHERE: ClickHouse reads the key columns first and the hashes and payloads only
	// of granules holding a wanted row. Every part holds a granule (8,192 rows) where
	// the host's rows begin, which the primary key cannot rule out; with WHERE, each
	// cost its payloads: one host's page of 100 alerts in 10M read 270k rows and took
	// about 100 ms, against 15 ms (bench/fleet). month is the partition key: the
	// partitions outside the time span are not opened.
	query := `SELECT host_id, seq, hash, prev_hash, payload FROM entries
		PREWHERE host_id IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(hostArgs)), ", ") + `)
		AND ts >= ` + strconv.FormatInt(minTS, 10) + ` AND ts <= ` + strconv.FormatInt(maxTS, 10) + `
		AND seq IN (` + seqList.String() + `)
		WHERE month >= ` + monthOf(minTS) + ` AND month <= ` + monthOf(maxTS)
	ctx, cancel := context.WithTimeout(ctx, clickhouseTimeout)
	defer cancel()
	rows, err := s.ch.Query(ctx, query, hostArgs...)
	if err != nil {
		return nil, fmt.Errorf("reading history from ClickHouse: %w", err)
	}
	found := make(map[rowKey]entryText, len(keys))
	for rows.Next() {
		var k rowKey
		var t entryText
		if err := rows.Scan(&k.hostID, &k.seq, &k.hash, &t.prevHash, &t.payload); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading history from ClickHouse: %w", err)
		}
		found[k] = t
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("reading history from ClickHouse: %w", err)
	}
	out := make([]entryText, len(keys))
	for i, k := range keys {
		t, ok := found[rowKey{k.hostID, k.seq, k.hash}]
		if !ok {
			return nil, &MissingHistoryError{HostID: k.hostID, Seq: k.seq, Hash: k.hash}
		}
		out[i] = t
	}
	return out, nil
}

// monthOf is the entries partition (UTC year*100+month) of a time in nanoseconds, as
// insertHistory computes it.
func monthOf(ns int64) string {
	u := time.Unix(0, ns).UTC()
	return strconv.Itoa(u.Year()*100 + int(u.Month()))
}

// page applies the default and the cap to a requested page.
func page(limit, offset int) (int, int) {
	if limit <= 0 {
		limit = defaultLimit
	}
	return min(limit, maxLimit), max(offset, 0)
}

// where builds the WHERE clause of a PostgreSQL query; "$?" in a clause stands for the
// next parameter number.
type where struct {
	clauses []string
	args    []any
}

func (w *where) add(clause string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		clause = strings.Replace(clause, "$?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.clauses = append(w.clauses, clause)
}

// hostFilter matches a host by id or by name, t being the alias of the table with
// host_id. The ids are resolved first, so that the clause names host_id alone: with
// one id, PostgreSQL walks the (host_id, ts_ns) index of alerts, or the primary key of
// chain_entries, for exactly the rows of a page, where "host_id = $1 OR hostname = $1"
// over the join could use neither and scanned every host's rows in the time range.
func (s *Store) hostFilter(ctx context.Context, w *where, t, host string) error {
	if host == "" {
		return nil
	}
	ids, err := s.hostIDs(ctx, host)
	if err != nil {
		return err
	}
	switch len(ids) {
	case 0:
		w.add("false")
	case 1:
		w.add(t+".host_id = $?", ids[0])
	default:
		w.add(t+".host_id = ANY($?)", ids)
	}
	return nil
}

// timeRange keeps event times in [from, to), to the nanosecond. A bound outside
// [storage.MinTime, storage.MaxTime), which no stored time is, is not converted to nanoseconds (it would
// overflow): it either drops its clause or matches nothing.
func (w *where) timeRange(t string, from, to time.Time) {
	switch {
	case from.IsZero() || !from.After(storage.MinTime):
	case !from.Before(storage.MaxTime):
		w.add("false")
	default:
		w.add(t+".ts_ns >= $?", from.UnixNano())
	}
	switch {
	case to.IsZero() || !to.Before(storage.MaxTime):
	case !to.After(storage.MinTime):
		w.add("false")
	default:
		w.add(t+".ts_ns < $?", to.UnixNano())
	}
}

func (w *where) sql() string {
	if len(w.clauses) == 0 {
		return ""
	}
	return "WHERE " + strings.Join(w.clauses, " AND ")
}

// page returns the LIMIT and OFFSET clause, binding both.
func (w *where) page(limit, offset int) string {
	w.args = append(w.args, limit, offset)
	return fmt.Sprintf("LIMIT $%d OFFSET $%d", len(w.args)-1, len(w.args))
}
