package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/storage"
)

// MarkOffline marks the ONLINE hosts silent since before silentSince OFFLINE and
// records an event for each. The UPDATE … RETURNING is atomic, so when several
// collector replicas run it, each host is marked by exactly one. Forks are not hosts:
// the switch leaves them be.
func (s *Store) MarkOffline(ctx context.Context, silentSince, now time.Time) ([]storage.HostEvent, error) {
	var events []storage.HostEvent
	err := pgx.BeginFunc(ctx, s.pg, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE hosts SET status = 'OFFLINE'
			WHERE status = 'ONLINE' AND last_seen < $1 AND fork_of IS NULL RETURNING host_id, hostname, last_seen`, silentSince.UTC())
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
	var (
		ev storage.HostEvent
		ok bool
	)
	err := pgx.BeginFunc(ctx, s.pg, func(tx pgx.Tx) error {
		var name string
		err := tx.QueryRow(ctx, `UPDATE hosts SET status = 'ONLINE' WHERE host_id = $1 AND status = 'OFFLINE' RETURNING hostname`, hostID).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
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

// insertHostEvent records ev, and its alert in the alert index.
func insertHostEvent(ctx context.Context, tx pgx.Tx, ev storage.HostEvent) error {
	_, err := addHostEvent(ctx, tx, ev)
	return err
}

// addHostEvent records ev and its alert unless an event with its id is recorded
// already; added says whether it was.
func addHostEvent(ctx context.Context, tx pgx.Tx, ev storage.HostEvent) (added bool, err error) {
	tag, err := tx.Exec(ctx, `INSERT INTO host_events (event_id, host_id, hostname, ts, kind, severity, message, rule_name, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING`,
		ev.EventID, ev.HostID, ev.Hostname, ev.Time.UTC(), ev.Kind, ev.Severity, ev.Message, ev.Rule(), string(ev.Detail()))
	if err != nil || tag.RowsAffected() == 0 {
		return false, err
	}
	// The alert of a host event has no chain entry: seq is NULL.
	_, err = tx.Exec(ctx, `INSERT INTO alerts (alert_id, host_id, seq, ts_ns, received_at, tripwire_type, rule_name, severity)
		VALUES ($1, $2, NULL, $3, now(), $4, $5, $6) ON CONFLICT (alert_id) DO NOTHING`,
		ev.EventID, ev.HostID, ev.Time.UnixNano(), storage.TypeHost, ev.Rule(), ev.Severity)
	return err == nil, err
}

// HostEvents returns host events in [from, to), newest first.
func (s *Store) HostEvents(ctx context.Context, from, to time.Time, limit int) ([]storage.HostEvent, error) {
	if to.IsZero() {
		to = storage.MaxTime
	}
	if from.IsZero() {
		from = storage.MinTime
	}
	rows, err := s.pg.Query(ctx, `SELECT event_id, host_id, hostname, ts, kind, severity, message FROM host_events
		WHERE ts >= $1 AND ts < $2 ORDER BY ts DESC, event_id LIMIT $3`, from.UTC(), to.UTC(), storage.HostEventLimit(limit))
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

// AddHostEvent records an event the collector raised about a host, and its alert, once
// per id.
func (s *Store) AddHostEvent(ctx context.Context, ev storage.HostEvent) (bool, error) {
	var added bool
	err := pgx.BeginFunc(ctx, s.pg, func(tx pgx.Tx) error {
		var err error
		added, err = addHostEvent(ctx, tx, ev)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("recording host event: %w", err)
	}
	return added, nil
}

// SetHostHealth records the host's watchers and what is degraded, raising DEGRADED or
// RESTORED when degraded turns on or off. The row is locked for the transaction, so
// that of several collectors seeing one change, one raises it.
func (s *Store) SetHostHealth(ctx context.Context, hostID, watchers, degraded string, now time.Time) (storage.HostEvent, bool, error) {
	var (
		ev      storage.HostEvent
		changed bool
	)
	err := pgx.BeginFunc(ctx, s.pg, func(tx pgx.Tx) error {
		var name, was string
		err := tx.QueryRow(ctx, `SELECT hostname, degraded FROM hosts WHERE host_id = $1 FOR UPDATE`, hostID).Scan(&name, &was)
		if errors.Is(err, pgx.ErrNoRows) {
			return storage.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE hosts SET watchers = $2, degraded = $3 WHERE host_id = $1`, hostID, watchers, degraded); err != nil {
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
