package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// countKeys maps a storage.GroupByKeys entry to the SQL of its key.
var countKeys = map[string]string{
	storage.GroupByType:     "COALESCE(e.tripwire_type, '')",
	storage.GroupBySeverity: "COALESCE(e.severity, '')",
	storage.GroupByHost:     "COALESCE(h.hostname, e.host_id)",
	storage.GroupByRule:     "COALESCE(e.rule_name, '')",
}

// AlertCounts counts the alerts matching f per interval and key, in SQL. Bucket starts
// are computed on the event time's nanoseconds, floored to a multiple of the interval
// (also before 1970).
func (s *Store) AlertCounts(ctx context.Context, f storage.CountFilter) ([]storage.CountBucket, error) {
	if err := storage.ValidateCountFilter(f); err != nil {
		return nil, err
	}
	w := alertWhere(f.Alert)
	step := f.Interval.Nanoseconds()
	rows, err := s.db.QueryContext(ctx, `SELECT bucket, key, count(*) FROM (
			SELECT epoch_ns(e.ts) - ((epoch_ns(e.ts) % ?) + ?) % ? AS bucket, `+countKeys[f.GroupBy]+` AS key
			`+alertFrom+w.sql()+`
		) GROUP BY bucket, key ORDER BY bucket, key LIMIT ?`,
		append([]any{step, step, step}, append(w.args, storage.MaxCountBuckets+1)...)...)
	if err != nil {
		return nil, fmt.Errorf("counting alerts: %w", err)
	}
	defer rows.Close()
	var out []storage.CountBucket
	for rows.Next() {
		var b storage.CountBucket
		var ns int64
		if err := rows.Scan(&ns, &b.Key, &b.Count); err != nil {
			return nil, fmt.Errorf("counting alerts: %w", err)
		}
		b.Time = time.Unix(0, ns).UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting alerts: %w", err)
	}
	if len(out) > storage.MaxCountBuckets {
		return nil, fmt.Errorf("counting alerts: %w: more than %d buckets", storage.ErrTooManyBuckets, storage.MaxCountBuckets)
	}
	return out, nil
}

// SetTriage records the triage of an alert (an event entry's or a host event's) and
// returns the alert.
func (s *Store) SetTriage(ctx context.Context, alertID, status, by, note string) (storage.Alert, error) {
	if err := storage.ValidateTriage(status, by, note); err != nil {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, err)
	}
	if err := s.lockWrite(ctx); err != nil {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: waiting for the writer: %w", alertID, err)
	}
	defer s.unlockWrite()
	// The alert must exist: an unknown or malformed id is not found.
	res, err := s.db.ExecContext(ctx, `INSERT INTO triage (alert_id, status, status_by, status_at, note)
		SELECT alert_id, ?, ?, now(), ? FROM alert_rows WHERE alert_id = TRY_CAST(? AS UUID)
		ON CONFLICT (alert_id) DO UPDATE SET status = excluded.status, status_by = excluded.status_by,
			status_at = excluded.status_at, note = excluded.note`, status, by, note, alertID)
	if err != nil {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, err)
	}
	if n == 0 {
		return storage.Alert{}, fmt.Errorf("triaging alert %q: %w", alertID, storage.ErrNotFound)
	}
	a, err := s.scanAlert(s.db.QueryRowContext(ctx, alertSelect+"WHERE e.alert_id = ?::UUID", alertID))
	if err != nil {
		return storage.Alert{}, fmt.Errorf("reading triaged alert %q: %w", alertID, err)
	}
	return a, nil
}

// PutRules replaces the central rules in one transaction.
func (s *Store) PutRules(ctx context.Context, rules []storage.RuleRecord) (storage.RuleChanges, error) {
	if err := storage.ValidateRules(rules); err != nil {
		return storage.RuleChanges{}, fmt.Errorf("replacing rules: %w", err)
	}
	if err := s.lockWrite(ctx); err != nil {
		return storage.RuleChanges{}, fmt.Errorf("replacing rules: waiting for the writer: %w", err)
	}
	defer s.unlockWrite()
	var changes storage.RuleChanges
	err := s.inSQLTx(ctx, func(tx *sql.Tx) error {
		old, err := readRules(ctx, tx, "")
		if err != nil {
			return err
		}
		changes = storage.DiffRules(old, rules)
		return putRules(ctx, tx, rules, changes)
	})
	if err != nil {
		return storage.RuleChanges{}, fmt.Errorf("replacing rules: %w", err)
	}
	return changes, nil
}

// putRules applies c, the changes from the stored rules to rules: rows that are
// unchanged stay as they are.
func putRules(ctx context.Context, tx *sql.Tx, rules []storage.RuleRecord, c storage.RuleChanges) error {
	for _, k := range c.Removed {
		if _, err := tx.ExecContext(ctx, "DELETE FROM rules WHERE host = ? AND name = ?", k.Host, k.Name); err != nil {
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO rules (host, name, type, severity, body, updated_at)
			VALUES (?, ?, ?, ?, ?, now())
			ON CONFLICT (host, name) DO UPDATE SET type = excluded.type, severity = excluded.severity,
				body = excluded.body, updated_at = excluded.updated_at`,
			r.Host, r.Name, r.Type, r.Severity, string(r.Body)); err != nil {
			return err
		}
	}
	return nil
}

// Rules returns every central rule (host ""), or those applying to host.
func (s *Store) Rules(ctx context.Context, host string) ([]storage.RuleRecord, error) {
	rules, err := readRules(ctx, s.db, host)
	if err != nil {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	return rules, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func readRules(ctx context.Context, q querier, host string) ([]storage.RuleRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT host, name, type, severity, body, updated_at FROM rules
		WHERE ? = '' OR host IN ('', ?) ORDER BY host, name`, host, host)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.RuleRecord
	for rows.Next() {
		var r storage.RuleRecord
		var body string
		if err := rows.Scan(&r.Host, &r.Name, &r.Type, &r.Severity, &body, &r.UpdatedAt); err != nil {
			return nil, err
		}
		r.Body, r.UpdatedAt = storage.RawJSON(body), r.UpdatedAt.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// inSQLTx runs f in a transaction, committed if f returns nil.
func (s *Store) inSQLTx(ctx context.Context, f func(tx *sql.Tx) error) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	return tx.Commit()
}
