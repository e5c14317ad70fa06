package fleet

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/storage"
)

// maxTextMatches bounds the entries a Text filter may match in ClickHouse before
// PostgreSQL selects among them: past it, the caller is asked to narrow the filter.
const maxTextMatches = 200_000

// maxTriaged bounds the triaged alerts a Status filter of AlertCounts may name to
// ClickHouse.
const maxTriaged = 100_000

// chWhere builds the WHERE clause of a ClickHouse query over entries; "?" binds.
type chWhere struct {
	clauses []string
	args    []any
}

func (w *chWhere) add(clause string, args ...any) {
	w.clauses = append(w.clauses, clause)
	w.args = append(w.args, args...)
}

func (w *chWhere) sql() string { return "WHERE " + strings.Join(w.clauses, " AND ") }

// chAlertWhere selects in ClickHouse the event entries matching f's columns, its host ids
// (resolved in PostgreSQL), its time range and its text; the triage status is not there.
func (s *Store) chAlertWhere(ctx context.Context, f storage.AlertFilter) (chWhere, error) {
	var w chWhere
	w.add("kind = 'event'")
	if f.Host != "" {
		ids, err := s.hostIDs(ctx, f.Host)
		if err != nil {
			return w, err
		}
		if len(ids) == 0 {
			w.add("0")
		} else {
			// Bound one by one: 18.16 cannot compare a String with the array a slice binds as.
			args := make([]any, len(ids))
			for i, id := range ids {
				args[i] = id
			}
			w.add("host_id IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+")", args...)
		}
	}
	for _, c := range [...]struct{ col, v string }{{"tripwire_type", f.Type}, {"severity", f.Severity}, {"rule_name", f.Rule}} {
		if c.v != "" {
			w.add(c.col+" = ?", c.v)
		}
	}
	switch {
	case f.From.IsZero() || !f.From.After(storage.MinTime):
	case !f.From.Before(storage.MaxTime):
		w.add("0")
	default:
		// month, the partition key, too: partitions outside the range are not opened.
		w.add("ts >= " + strconv.FormatInt(f.From.UnixNano(), 10) + " AND month >= " + monthOf(f.From.UnixNano()))
	}
	switch {
	case f.To.IsZero() || !f.To.Before(storage.MaxTime):
	case !f.To.After(storage.MinTime):
		w.add("0")
	default:
		w.add("ts < " + strconv.FormatInt(f.To.UnixNano(), 10) + " AND month <= " + monthOf(f.To.UnixNano()-1))
	}
	if f.Text != "" {
		// The payload's "event" member, as the agent wrote it.
		w.add("positionUTF8(lowerUTF8(visitParamExtractRaw(payload, 'event')), lowerUTF8(?)) > 0", f.Text)
	}
	return w, nil
}

// hostIDs returns the ids of the host named host, by id or by name: those of registered
// hosts of that name or id, and host itself if the store holds entries under it
// (chain_heads has a row for every chain held; hosts one for every host that
// registered, whose host events may be all it has). None: no such host.
func (s *Store) hostIDs(ctx context.Context, host string) ([]string, error) {
	rows, err := s.pg.Query(ctx, `SELECT host_id FROM hosts WHERE hostname = $1 OR host_id = $1
		UNION SELECT host_id FROM chain_heads WHERE host_id = $1`, host)
	if err != nil {
		return nil, fmt.Errorf("resolving host %q: %w", host, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("resolving host %q: %w", host, err)
	}
	return ids, nil
}

type textMatches struct {
	hostIDs []string
	seqs    []int64
	hashes  []string
}

// textKeys returns the entries of ClickHouse's history matching f (its text above all),
// each (host_id, seq, hash) once, for PostgreSQL to select among.
func (s *Store) textKeys(ctx context.Context, f storage.AlertFilter) (textMatches, error) {
	var m textMatches
	w, err := s.chAlertWhere(ctx, f)
	if err != nil {
		return m, err
	}
	ctx, cancel := context.WithTimeout(ctx, clickhouseTimeout)
	defer cancel()
	rows, err := s.ch.Query(ctx, "SELECT DISTINCT host_id, seq, hash FROM entries "+w.sql()+
		" LIMIT "+strconv.Itoa(maxTextMatches+1), w.args...)
	if err != nil {
		return m, fmt.Errorf("matching text in ClickHouse: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var host, hash string
		var seq uint64
		if err := rows.Scan(&host, &seq, &hash); err != nil {
			return m, fmt.Errorf("matching text in ClickHouse: %w", err)
		}
		m.hostIDs, m.seqs, m.hashes = append(m.hostIDs, host), append(m.seqs, int64(seq)), append(m.hashes, hash)
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("matching text in ClickHouse: %w", err)
	}
	if len(m.seqs) > maxTextMatches {
		return m, fmt.Errorf("%w: text %q matches more than %d entries: narrow the search with from and to, host or type", storage.ErrFilterTooBroad, f.Text, maxTextMatches)
	}
	return m, nil
}

// AlertCounts counts the alerts matching f per interval and key: those of event entries
// in ClickHouse, grouped there, and those of host events in PostgreSQL, which holds
// them (hostEventCounts); the two are summed per bucket and key. Copies of an entry (a
// resend stored twice before a merge) count once. A Status filter names to ClickHouse
// the alerts in the range that PostgreSQL has triaged (the few that are not open); with
// GroupByHost the key is the host's name from PostgreSQL.
func (s *Store) AlertCounts(ctx context.Context, f storage.CountFilter) ([]storage.CountBucket, error) {
	if err := storage.ValidateCountFilter(f); err != nil {
		return nil, err
	}
	w, err := s.chAlertWhere(ctx, f.Alert)
	if err != nil {
		return nil, fmt.Errorf("counting alerts: %w", err)
	}
	if f.Alert.Status != "" {
		clause, err := s.statusClause(ctx, f.Alert)
		if err != nil {
			return nil, fmt.Errorf("counting alerts: %w", err)
		}
		w.add(clause)
	}
	key := map[string]string{
		storage.GroupByType:     "tripwire_type",
		storage.GroupBySeverity: "severity",
		storage.GroupByRule:     "rule_name",
	}[f.GroupBy]
	if f.GroupBy == storage.GroupByHost {
		if key, err = s.hostNameExpr(ctx); err != nil {
			return nil, fmt.Errorf("counting alerts: %w", err)
		}
	}
	step := strconv.FormatInt(f.Interval.Nanoseconds(), 10)
	query := `SELECT ts - ((ts % ` + step + `) + ` + step + `) % ` + step + ` AS bucket, ` + key + ` AS key,
			uniqExact(host_id, seq) AS n
		FROM entries ` + w.sql() + `
		GROUP BY bucket, key ORDER BY bucket, key LIMIT ` + strconv.Itoa(storage.MaxCountBuckets+1)
	ctx, cancel := context.WithTimeout(ctx, clickhouseTimeout)
	defer cancel()
	// Lists of triaged alerts or host names can make the query longer than the default
	// max_query_size (256 KiB).
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": max(len(query)*2, 1<<18)}))
	rows, err := s.ch.Query(ctx, query, w.args...)
	if err != nil {
		return nil, fmt.Errorf("counting alerts in ClickHouse: %w", err)
	}
	defer rows.Close()
	var out []storage.CountBucket
	for rows.Next() {
		var b storage.CountBucket
		var ns int64
		if err := rows.Scan(&ns, &b.Key, &b.Count); err != nil {
			return nil, fmt.Errorf("counting alerts in ClickHouse: %w", err)
		}
		b.Time = time.Unix(0, ns).UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting alerts in ClickHouse: %w", err)
	}
	hostCounts, err := s.hostEventCounts(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("counting alerts: %w", err)
	}
	out = storage.MergeCounts(out, hostCounts)
	if len(out) > storage.MaxCountBuckets {
		return nil, fmt.Errorf("counting alerts: %w: more than %d buckets", storage.ErrTooManyBuckets, storage.MaxCountBuckets)
	}
	return out, nil
}

// hostEventCounts counts the host events' alerts (seq NULL in the alert index) matching
// f, per interval and key, in PostgreSQL.
func (s *Store) hostEventCounts(ctx context.Context, f storage.CountFilter) ([]storage.CountBucket, error) {
	if f.Alert.Type != "" && f.Alert.Type != storage.TypeHost {
		return nil, nil // only TypeHost alerts are host events
	}
	w, err := s.alertIndexWhere(ctx, f.Alert)
	if err != nil {
		return nil, err
	}
	w.add("a.seq IS NULL")
	if f.Alert.Text != "" {
		w.add("strpos(lower(he.detail), lower($?)) > 0", f.Alert.Text)
	}
	key := map[string]string{
		storage.GroupByType:     "COALESCE(a.tripwire_type, '')",
		storage.GroupBySeverity: "COALESCE(a.severity, '')",
		storage.GroupByHost:     "COALESCE(h.hostname, a.host_id)",
		storage.GroupByRule:     "COALESCE(a.rule_name, '')",
	}[f.GroupBy]
	step := f.Interval.Nanoseconds()
	w.args = append(w.args, step)
	stepArg := "$" + strconv.Itoa(len(w.args)) + "::bigint"
	rows, err := s.pg.Query(ctx, `SELECT a.ts_ns - ((a.ts_ns % `+stepArg+`) + `+stepArg+`) % `+stepArg+` AS bucket, `+key+` AS key, count(*)
		FROM alerts AS a
		LEFT JOIN host_events AS he ON he.event_id = a.alert_id::text
		LEFT JOIN hosts AS h ON h.host_id = a.host_id
		`+w.sql()+` GROUP BY 1, 2`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("counting host events: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.CountBucket, error) {
		var b storage.CountBucket
		var ns, n int64
		err := row.Scan(&ns, &b.Key, &n)
		b.Time, b.Count = time.Unix(0, ns).UTC(), uint64(n)
		return b, err
	})
}

// statusClause returns the ClickHouse condition keeping the alerts of f.Status: those
// PostgreSQL has triaged to it, or for "open" all but those triaged to anything else.
func (s *Store) statusClause(ctx context.Context, f storage.AlertFilter) (string, error) {
	var w where
	w.add("a.status <> 'open'")
	w.add("a.seq IS NOT NULL") // host events are counted in PostgreSQL (hostEventCounts)
	w.timeRange("a", f.From, f.To)
	rows, err := s.pg.Query(ctx, "SELECT a.host_id, a.seq, a.status FROM alerts AS a "+w.sql()+
		" LIMIT "+strconv.Itoa(maxTriaged+1), w.args...)
	if err != nil {
		return "", fmt.Errorf("reading triaged alerts: %w", err)
	}
	defer rows.Close()
	var tuples []string
	n := 0
	for rows.Next() {
		var host, status string
		var seq int64
		if err := rows.Scan(&host, &seq, &status); err != nil {
			return "", fmt.Errorf("reading triaged alerts: %w", err)
		}
		n++
		if (f.Status == storage.TriageOpen) != (status == f.Status) {
			tuples = append(tuples, "("+quoteString(host)+", "+strconv.FormatInt(seq, 10)+")")
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("reading triaged alerts: %w", err)
	}
	if n > maxTriaged {
		return "", fmt.Errorf("%w: more than %d alerts between from and to are triaged: narrow the range to count by status", storage.ErrFilterTooBroad, maxTriaged)
	}
	switch {
	case len(tuples) == 0 && f.Status == storage.TriageOpen:
		return "1", nil
	case len(tuples) == 0:
		return "0", nil
	case f.Status == storage.TriageOpen:
		return "(host_id, seq) NOT IN (" + strings.Join(tuples, ", ") + ")", nil
	}
	return "(host_id, seq) IN (" + strings.Join(tuples, ", ") + ")", nil
}

// hostNameExpr returns a ClickHouse expression of an entry's host name: its host's
// registered name from PostgreSQL, else its host id.
func (s *Store) hostNameExpr(ctx context.Context) (string, error) {
	rows, err := s.pg.Query(ctx, "SELECT host_id, hostname FROM hosts ORDER BY host_id")
	if err != nil {
		return "", fmt.Errorf("reading host names: %w", err)
	}
	defer rows.Close()
	var ids, names []string
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return "", fmt.Errorf("reading host names: %w", err)
		}
		ids, names = append(ids, quoteString(id)), append(names, quoteString(name))
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("reading host names: %w", err)
	}
	if len(ids) == 0 {
		return "host_id", nil
	}
	return "transform(host_id, [" + strings.Join(ids, ", ") + "], [" + strings.Join(names, ", ") + "], host_id)", nil
}

// quoteString returns s as a ClickHouse string literal.
func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// SetTriage records the triage of an alert in PostgreSQL's alert index and returns the
// alert.
func (s *Store) SetTriage(ctx context.Context, alertID, status, by, note string) (storage.Alert, error) {
	if err := storage.ValidateTriage(status, by, note); err != nil {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, err)
	}
	id, err := uuid.Parse(alertID)
	if err != nil {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, storage.ErrNotFound)
	}
	tag, err := s.pg.Exec(ctx, `UPDATE alerts SET status = $1, status_by = $2, status_at = now(), status_note = $3
		WHERE alert_id = $4`, status, by, note, id.String())
	if err != nil {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, err)
	}
	if tag.RowsAffected() == 0 {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, storage.ErrNotFound)
	}
	as, err := s.alerts(ctx, "WHERE a.alert_id = $1", id.String())
	if err != nil {
		return storage.Alert{}, fmt.Errorf("reading triaged alert %q: %w", alertID, err)
	}
	if len(as) != 1 {
		return storage.Alert{}, fmt.Errorf("reading triaged alert %q: %w", alertID, storage.ErrNotFound)
	}
	return as[0], nil
}

// PutRules replaces the central rules in one PostgreSQL transaction, which holds the
// rules table locked so that two applies do not interleave.
func (s *Store) PutRules(ctx context.Context, rules []storage.RuleRecord) (storage.RuleChanges, error) {
	if err := storage.ValidateRules(rules); err != nil {
		return storage.RuleChanges{}, fmt.Errorf("replacing rules: %w", err)
	}
	var c storage.RuleChanges
	err := pgx.BeginFunc(ctx, s.pg, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE rules IN EXCLUSIVE MODE"); err != nil {
			return err
		}
		old, err := readRules(ctx, tx, "")
		if err != nil {
			return err
		}
		c = storage.DiffRules(old, rules)
		for _, k := range c.Removed {
			if _, err := tx.Exec(ctx, "DELETE FROM rules WHERE host = $1 AND name = $2", k.Host, k.Name); err != nil {
				return err
			}
		}
		touched := map[storage.RuleKey]bool{}
		for _, k := range append(c.Added, c.Changed...) {
			touched[k] = true
		}
		for _, r := range rules {
			if !touched[storage.RuleKey{Host: r.Host, Name: r.Name}] {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO rules (host, name, type, severity, body, updated_at)
				VALUES ($1, $2, $3, $4, $5, now())
				ON CONFLICT (host, name) DO UPDATE SET type = excluded.type, severity = excluded.severity,
					body = excluded.body, updated_at = excluded.updated_at`,
				r.Host, r.Name, r.Type, r.Severity, string(r.Body)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return storage.RuleChanges{}, fmt.Errorf("replacing rules: %w", err)
	}
	return c, nil
}

// Rules returns every central rule (host ""), or those applying to host.
func (s *Store) Rules(ctx context.Context, host string) ([]storage.RuleRecord, error) {
	rules, err := readRules(ctx, s.pg, host)
	if err != nil {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	return rules, nil
}

type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readRules(ctx context.Context, q pgQuerier, host string) ([]storage.RuleRecord, error) {
	rows, err := q.Query(ctx, `SELECT host, name, type, severity, body, updated_at FROM rules
		WHERE $1::text = '' OR host IN ('', $1::text) ORDER BY host COLLATE "C", name COLLATE "C"`, host)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.RuleRecord, error) {
		var r storage.RuleRecord
		var body string
		err := row.Scan(&r.Host, &r.Name, &r.Type, &r.Severity, &body, &r.UpdatedAt)
		r.Body, r.UpdatedAt = storage.RawJSON(body), r.UpdatedAt.UTC()
		return r, err
	})
}
