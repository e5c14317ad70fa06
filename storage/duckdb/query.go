package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

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
	if err := s.lockWrite(ctx); err != nil {
		return fmt.Errorf("registering host %q: waiting for the writer: %w", h.HostID, err)
	}
	defer s.unlockWrite()
	_, err := s.db.ExecContext(ctx, `INSERT INTO hosts
			(host_id, hostname, os, arch, kernel, agent_version, protocol_version, watchers, first_seen, last_seen, cert_serial, cert_not_after, cert_not_before, fork_of, fork_seq, cert_key_sha256)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (host_id) DO UPDATE SET
			hostname = excluded.hostname, os = excluded.os, arch = excluded.arch,
			kernel = excluded.kernel, agent_version = excluded.agent_version,
			protocol_version = excluded.protocol_version, watchers = excluded.watchers,
			last_seen = greatest(hosts.last_seen, excluded.last_seen),
			cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after,
			cert_not_before = excluded.cert_not_before, cert_key_sha256 = excluded.cert_key_sha256`,
		h.HostID, h.Hostname, h.OS, h.Arch, h.Kernel, h.AgentVersion, h.ProtocolVersion, h.Watchers,
		h.FirstSeen.UTC(), h.LastSeen.UTC(), h.CertSerial, storage.UTCPtr(h.CertNotAfter), storage.UTCPtr(h.CertNotBefore), nullIfEmpty(h.ForkOf), nullIfZero(h.ForkSeq), h.CertKey)
	if err != nil {
		return fmt.Errorf("registering host %q: %w", h.HostID, err)
	}
	return nil
}

// TouchHost sets the host's last_seen to t, unless it is already later. It returns an
// error wrapping storage.ErrNotFound for a host that never registered.
func (s *Store) TouchHost(ctx context.Context, hostID string, t time.Time) error {
	if err := s.lockWrite(ctx); err != nil {
		return fmt.Errorf("touching host %q: waiting for the writer: %w", hostID, err)
	}
	defer s.unlockWrite()
	res, err := s.db.ExecContext(ctx,
		"UPDATE hosts SET last_seen = greatest(last_seen, ?) WHERE host_id = ?", t.UTC(), hostID)
	if err != nil {
		return fmt.Errorf("touching host %q: %w", hostID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("touching host %q: %w", hostID, err)
	}
	if n == 0 {
		return fmt.Errorf("touching host %q: %w", hostID, storage.ErrNotFound)
	}
	return nil
}

// Hosts returns every registered host by name (then id), with its chain head.
func (s *Store) Hosts(ctx context.Context) ([]storage.Host, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT h.host_id, h.hostname, h.os, h.arch, h.kernel,
			h.agent_version, h.protocol_version, h.watchers, h.first_seen, h.last_seen,
			COALESCE(c.head_seq, 0), COALESCE(h.cert_serial, ''), COALESCE(h.cert_key_sha256, ''), h.cert_not_after, h.cert_not_before, COALESCE(h.status, 'ONLINE'),
			COALESCE(h.degraded, ''), COALESCE(h.fork_of, ''), COALESCE(h.fork_seq, 0)
		FROM hosts AS h LEFT JOIN chain_heads AS c ON c.host_id = h.host_id
		ORDER BY h.hostname, h.host_id`)
	if err != nil {
		return nil, fmt.Errorf("listing hosts: %w", err)
	}
	defer rows.Close()
	var hosts []storage.Host
	for rows.Next() {
		var h storage.Host
		if err := rows.Scan(&h.HostID, &h.Hostname, &h.OS, &h.Arch, &h.Kernel, &h.AgentVersion,
			&h.ProtocolVersion, &h.Watchers, &h.FirstSeen, &h.LastSeen, &h.HeadSeq, &h.CertSerial, &h.CertKey, &h.CertNotAfter, &h.CertNotBefore, &h.Status,
			&h.Degraded, &h.ForkOf, &h.ForkSeq); err != nil {
			return nil, fmt.Errorf("listing hosts: %w", err)
		}
		h.FirstSeen, h.LastSeen, h.CertNotAfter = h.FirstSeen.UTC(), h.LastSeen.UTC(), storage.UTCPtr(h.CertNotAfter)
		h.CertNotBefore = storage.UTCPtr(h.CertNotBefore)
		h.Status = storage.HostStatus(h.Status, h.Degraded)
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing hosts: %w", err)
	}
	return hosts, nil
}

// Alerts returns the alerts matching f — event entries and host events — newest first
// (event time, then seq with a host event's NULL first, then host id, all descending,
// as PostgreSQL orders them), each with its triage state.
//
// EventDetail is cut from the stored payload in Go rather than with DuckDB's
// json_extract, which re-serialises (it decodes escapes such as \u003c that Go's encoder
// writes for '<'): done here, it is the exact text the hash covers and the same bytes the
// live stream sent for the alert. An entry whose payload is not JSON has no EventDetail.
func (s *Store) Alerts(ctx context.Context, f storage.AlertFilter) ([]storage.Alert, error) {
	w := alertWhere(f)
	limit, offset := page(f.Limit, f.Offset)
	rows, err := s.db.QueryContext(ctx, alertSelect+w.sql()+`
		ORDER BY e.ts DESC, e.seq DESC NULLS FIRST, e.host_id DESC
		LIMIT ? OFFSET ?`, append(w.args, limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("querying alerts: %w", err)
	}
	defer rows.Close()
	var alerts []storage.Alert
	for rows.Next() {
		a, err := s.scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("querying alerts: %w", err)
		}
		alerts = append(alerts, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying alerts: %w", err)
	}
	return alerts, nil
}

// alertSelect reads the columns scanAlert takes, from alert_rows AS e joined to hosts AS
// h and triage AS t.
const alertSelect = `SELECT COALESCE(e.alert_id::VARCHAR, ''), COALESCE(h.hostname, ''),
		e.host_id, COALESCE(e.seq, 0), e.ts, COALESCE(e.tripwire_type, ''), COALESCE(e.rule_name, ''),
		COALESCE(e.severity, ''), COALESCE(e.payload, ''), e.detail,
		COALESCE(t.status, 'open'), COALESCE(t.status_by, ''), t.status_at, COALESCE(t.note, ''),
		COALESCE(h.fork_of, '')
	` + alertFrom

// alertFrom joins alert_rows AS e (the view of every alert: event entries and host
// events; sql/duckdb/0005_host_alerts_health.sql) to hosts AS h and triage AS t.
const alertFrom = `FROM alert_rows AS e
	LEFT JOIN hosts AS h ON h.host_id = e.host_id
	LEFT JOIN triage AS t ON t.alert_id = e.alert_id
	`

func (s *Store) scanAlert(rows interface{ Scan(...any) error }) (storage.Alert, error) {
	var a storage.Alert
	var payload string
	var detail sql.NullString
	var at sql.NullTime
	if err := rows.Scan(&a.AlertID, &a.Host, &a.HostID, &a.Seq, &a.Timestamp, &a.TripwireType,
		&a.RuleName, &a.Severity, &payload, &detail, &a.TriageStatus, &a.TriageBy, &at, &a.TriageNote, &a.ForkOf); err != nil {
		return storage.Alert{}, err
	}
	a.Timestamp = a.Timestamp.UTC()
	if at.Valid {
		t := at.Time.UTC()
		a.TriageAt = &t
	}
	if detail.Valid {
		a.EventDetail = storage.RawJSON(detail.String) // a host event's, as the collector wrote it
	} else {
		a.EventDetail = s.eventDetail(a.HostID, a.Seq, payload)
	}
	return a, nil
}

// alertWhere selects the alerts of alert_rows matching f.
func alertWhere(f storage.AlertFilter) where {
	var w where
	w.host(f.Host)
	if f.Type != "" {
		w.add("e.tripwire_type = ?", f.Type)
	}
	if f.Severity != "" {
		w.add("e.severity = ?", f.Severity)
	}
	if f.Rule != "" {
		w.add("e.rule_name = ?", f.Rule)
	}
	if f.Status != "" {
		w.add("COALESCE(t.status, 'open') = ?", f.Status)
	}
	if f.Text != "" {
		// The event member as JSON text, as json_extract writes it (a payload that is not
		// JSON has none), or a host event's detail.
		w.add(`contains(lower(COALESCE(e.detail,
			json_extract(CASE WHEN json_valid(e.payload) THEN e.payload END, '$.event')::VARCHAR)), lower(?))`, f.Text)
	}
	w.timeRange(f.From, f.To)
	return w
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
// payloads exactly as stored.
func (s *Store) Audit(ctx context.Context, f storage.AuditFilter) ([]storage.AuditEntry, error) {
	var w where
	w.host(f.Host)
	w.timeRange(f.From, f.To)
	limit, offset := page(f.Limit, f.Offset)
	rows, err := s.db.QueryContext(ctx, `SELECT COALESCE(h.hostname, ''), e.host_id, e.seq, e.ts, e.kind,
			e.prev_hash, e.hash, e.payload
		FROM entries AS e LEFT JOIN hosts AS h ON h.host_id = e.host_id
		`+w.sql()+`
		ORDER BY e.host_id, e.seq
		LIMIT ? OFFSET ?`, append(w.args, limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("querying audit entries: %w", err)
	}
	defer rows.Close()
	var entries []storage.AuditEntry
	for rows.Next() {
		var e storage.AuditEntry
		if err := rows.Scan(&e.Host, &e.HostID, &e.Seq, &e.Time, &e.Kind, &e.PrevHash, &e.Hash, &e.Payload); err != nil {
			return nil, fmt.Errorf("querying audit entries: %w", err)
		}
		e.Time = e.Time.UTC()
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying audit entries: %w", err)
	}
	return entries, nil
}

// page applies the default and the cap to a requested page.
func page(limit, offset int) (int, int) {
	if limit <= 0 {
		limit = defaultLimit
	}
	return min(limit, maxLimit), max(offset, 0)
}

// where builds the WHERE clause of a query over entries AS e joined to hosts AS h.
type where struct {
	clauses []string
	args    []any
}

func (w *where) add(clause string, args ...any) {
	w.clauses = append(w.clauses, clause)
	w.args = append(w.args, args...)
}

// host matches a host by id or by name.
func (w *where) host(host string) {
	if host != "" {
		w.add("(e.host_id = ? OR h.hostname = ?)", host, host)
	}
}

// timeRange keeps event times in [from, to), to the nanosecond: ts is TIMESTAMP_NS and a
// time.Time bound to a TIMESTAMP_NS parameter keeps its nanoseconds. A bound outside
// [storage.MinTime, storage.MaxTime), which no stored time is, is not sent (the driver would refuse it):
// it either drops its clause or matches nothing.
func (w *where) timeRange(from, to time.Time) {
	switch {
	case from.IsZero() || !from.After(storage.MinTime):
		// Every stored time is at or after storage.MinTime.
	case !from.Before(storage.MaxTime):
		w.add("false")
	default:
		w.add("e.ts >= ?", from.UTC())
	}
	switch {
	case to.IsZero() || !to.Before(storage.MaxTime):
		// Every stored time is before storage.MaxTime.
	case !to.After(storage.MinTime):
		w.add("false")
	default:
		w.add("e.ts < ?", to.UTC())
	}
}

func (w *where) sql() string {
	if len(w.clauses) == 0 {
		return ""
	}
	return "WHERE " + strings.Join(w.clauses, " AND ")
}
