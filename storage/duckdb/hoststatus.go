package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// MarkOffline marks the ONLINE hosts silent since before silentSince OFFLINE and
// records an event for each. Forks are not hosts: the switch leaves them be.
func (s *Store) MarkOffline(ctx context.Context, silentSince, now time.Time) ([]storage.HostEvent, error) {
	if err := s.lockWrite(ctx); err != nil {
		return nil, fmt.Errorf("marking silent hosts: waiting for the writer: %w", err)
	}
	defer s.unlockWrite()
	var events []storage.HostEvent
	err := s.inSQLTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT host_id, hostname, last_seen FROM hosts
			WHERE COALESCE(status, 'ONLINE') = 'ONLINE' AND last_seen < ? AND fork_of IS NULL`, silentSince.UTC())
		if err != nil {
			return err
		}
		for rows.Next() {
			var id, name string
			var last time.Time
			if err := rows.Scan(&id, &name, &last); err != nil {
				rows.Close()
				return err
			}
			events = append(events, storage.NewHostEvent(id, name, storage.HostOffline, now, last))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, ev := range events {
			if _, err := tx.ExecContext(ctx, `UPDATE hosts SET status = 'OFFLINE' WHERE host_id = ?`, ev.HostID); err != nil {
				return err
			}
			if err := insertHostEvent(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("marking silent hosts: %w", err)
	}
	return events, nil
}

// MarkOnline sets an OFFLINE host ONLINE again and records its return.
func (s *Store) MarkOnline(ctx context.Context, hostID string, now time.Time) (storage.HostEvent, bool, error) {
	if err := s.lockWrite(ctx); err != nil {
		return storage.HostEvent{}, false, fmt.Errorf("marking host %q online: waiting for the writer: %w", hostID, err)
	}
	defer s.unlockWrite()
	var (
		ev storage.HostEvent
		ok bool
	)
	err := s.inSQLTx(ctx, func(tx *sql.Tx) error {
		var name string
		err := tx.QueryRowContext(ctx, `SELECT hostname FROM hosts WHERE host_id = ? AND status = 'OFFLINE'`, hostID).Scan(&name)
		if err == sql.ErrNoRows {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE hosts SET status = 'ONLINE' WHERE host_id = ?`, hostID); err != nil {
			return err
		}
		ev, ok = storage.NewHostEvent(hostID, name, storage.HostOnline, now, now), true
		return insertHostEvent(ctx, tx, ev)
	})
	if err != nil {
		return storage.HostEvent{}, false, fmt.Errorf("marking host %q online: %w", hostID, err)
	}
	return ev, ok, nil
}

// insertHostEvent records ev, which is an alert too (through the alert_rows view).
func insertHostEvent(ctx context.Context, tx *sql.Tx, ev storage.HostEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO host_events (event_id, host_id, hostname, ts, kind, severity, message, rule_name, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, ev.EventID, ev.HostID, ev.Hostname, ev.Time.UTC(), ev.Kind, ev.Severity, ev.Message, ev.Rule(), string(ev.Detail()))
	return err
}

// HostEvents returns host events in [from, to), newest first.
func (s *Store) HostEvents(ctx context.Context, from, to time.Time, limit int) ([]storage.HostEvent, error) {
	if to.IsZero() {
		to = storage.MaxTime
	}
	if from.IsZero() {
		from = storage.MinTime
	}
	rows, err := s.db.QueryContext(ctx, `SELECT event_id, host_id, hostname, ts, kind, severity, message FROM host_events
		WHERE ts >= ? AND ts < ? ORDER BY ts DESC, event_id LIMIT ?`, from.UTC(), to.UTC(), storage.HostEventLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing host events: %w", err)
	}
	defer rows.Close()
	var out []storage.HostEvent
	for rows.Next() {
		var ev storage.HostEvent
		if err := rows.Scan(&ev.EventID, &ev.HostID, &ev.Hostname, &ev.Time, &ev.Kind, &ev.Severity, &ev.Message); err != nil {
			return nil, fmt.Errorf("listing host events: %w", err)
		}
		ev.Time = ev.Time.UTC()
		out = append(out, ev)
	}
	return out, rows.Err()
}

// AddHostEvent records an event the collector raised about a host, once per id.
func (s *Store) AddHostEvent(ctx context.Context, ev storage.HostEvent) (bool, error) {
	if err := s.lockWrite(ctx); err != nil {
		return false, fmt.Errorf("recording host event: waiting for the writer: %w", err)
	}
	defer s.unlockWrite()
	res, err := s.db.ExecContext(ctx, `INSERT INTO host_events (event_id, host_id, hostname, ts, kind, severity, message, rule_name, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
		ev.EventID, ev.HostID, ev.Hostname, ev.Time.UTC(), ev.Kind, ev.Severity, ev.Message, ev.Rule(), string(ev.Detail()))
	if err != nil {
		return false, fmt.Errorf("recording host event: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// SetHostHealth records the host's watchers and what is degraded, raising DEGRADED or
// RESTORED when degraded turns on or off.
func (s *Store) SetHostHealth(ctx context.Context, hostID, watchers, degraded string, now time.Time) (storage.HostEvent, bool, error) {
	if err := s.lockWrite(ctx); err != nil {
		return storage.HostEvent{}, false, fmt.Errorf("recording health of host %q: waiting for the writer: %w", hostID, err)
	}
	defer s.unlockWrite()
	var (
		ev      storage.HostEvent
		changed bool
	)
	err := s.inSQLTx(ctx, func(tx *sql.Tx) error {
		var name, was string
		err := tx.QueryRowContext(ctx, `SELECT hostname, COALESCE(degraded, '') FROM hosts WHERE host_id = ?`, hostID).Scan(&name, &was)
		if err == sql.ErrNoRows {
			return storage.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE hosts SET watchers = ?, degraded = ? WHERE host_id = ?`, watchers, degraded, hostID); err != nil {
			return err
		}
		if (was == "") == (degraded == "") {
			return nil
		}
		ev, changed = storage.HealthEvent(hostID, name, degraded, now), true
		return insertHostEvent(ctx, tx, ev)
	})
	if err != nil {
		return storage.HostEvent{}, false, fmt.Errorf("recording health of host %q: %w", hostID, err)
	}
	return ev, changed, nil
}
