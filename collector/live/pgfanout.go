package live

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/storage"
)

// Publisher takes alerts just stored, for live subscribers. A Broker publishes to this
// process's subscribers; a PGFanout to those of every collector sharing the PostgreSQL
// database.
type Publisher interface {
	Publish(alerts ...storage.Alert)
}

// Channel is the PostgreSQL notification channel alerts travel on.
const Channel = "tripwire_alerts"

// maxNotify keeps a notification under PostgreSQL's 8000-byte payload limit.
const maxNotify = 7900

// notice is one alert as notified. An alert too large to notify whole travels without
// its event detail, which each receiver reads back from the store.
type notice struct {
	Alert         storage.Alert `json:"alert"`
	DetailOmitted bool          `json:"detail_omitted,omitempty"`
}

// PGFanout spreads alerts across collector replicas through PostgreSQL LISTEN/NOTIFY:
// Publish notifies, and Run listens and hands every alert — this collector's own
// included — to the local Broker. Subscribers may therefore connect to any replica, with
// no sticky sessions. Like the Broker, delivery is best effort: the store is the record.
type PGFanout struct {
	dsn    string
	local  *Broker
	store  storage.Store // to read back details too large to notify
	logger *slog.Logger

	mu     sync.Mutex
	notify *pgx.Conn // for Publish; reconnected on error
}

// NewPGFanout returns a fan-out over the PostgreSQL database at dsn, delivering to local.
func NewPGFanout(dsn string, local *Broker, store storage.Store, logger *slog.Logger) *PGFanout {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &PGFanout{dsn: dsn, local: local, store: store, logger: logger}
}

// Publish notifies every replica (this one included) of alerts, in one statement: one
// round trip and one commit however many alerts a batch holds. When PostgreSQL cannot
// be reached, this replica's subscribers still get them.
func (f *PGFanout) Publish(alerts ...storage.Alert) {
	if len(alerts) == 0 {
		return
	}
	payloads := make([]string, len(alerts))
	for i, a := range alerts {
		p, err := notifyPayload(a)
		if err != nil {
			f.logger.Warn("encoding an alert notification", "alert_id", a.AlertID, "err", err)
			f.local.Publish(alerts...)
			return
		}
		payloads[i] = p
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.notifyAll(payloads); err != nil {
		f.logger.Warn("notifying other collectors failed: only this one's live subscribers get the alerts", "err", err, "alerts", len(alerts))
		f.local.Publish(alerts...)
	}
}

// notifyPayload is an alert's notification: without its event detail when too large.
func notifyPayload(a storage.Alert) (string, error) {
	payload, err := json.Marshal(notice{Alert: a})
	if err != nil {
		return "", err
	}
	if len(payload) > maxNotify {
		a.EventDetail = nil
		if payload, err = json.Marshal(notice{Alert: a, DetailOmitted: true}); err != nil {
			return "", err
		}
	}
	return string(payload), nil
}

// notifyAll sends the notifications in one transaction, in order.
func (f *PGFanout) notifyAll(payloads []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if f.notify == nil || f.notify.IsClosed() {
		if f.notify, err = pgx.Connect(ctx, f.dsn); err != nil {
			return fmt.Errorf("connecting to PostgreSQL: %w", err)
		}
	}
	// unnest yields the array in order, and notifications of one transaction are
	// delivered in the order they were sent.
	if _, err = f.notify.Exec(ctx, "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", Channel, payloads); err != nil {
		f.notify.Close(ctx)
		f.notify = nil
		return fmt.Errorf("pg_notify: %w", err)
	}
	return nil
}

// Run listens until ctx ends, reconnecting after a lost connection (alerts notified
// meanwhile are not replayed: followers catch up from the API).
func (f *PGFanout) Run(ctx context.Context) error {
	defer func() {
		f.mu.Lock()
		if f.notify != nil {
			f.notify.Close(context.Background())
		}
		f.mu.Unlock()
	}()
	for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
		err := f.listen(ctx, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return nil
		}
		f.logger.Warn("listening for other collectors' alerts", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// listen holds one LISTEN connection, calling connected once it is in place.
func (f *PGFanout) listen(ctx context.Context, connected func()) error {
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if f.local.Subscribers() == 0 {
			continue // nobody here to tell: decoding it would be wasted
		}
		var msg notice
		if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil {
			f.logger.Warn("ignoring a malformed alert notification", "err", err)
			continue
		}
		if msg.DetailOmitted {
			f.readBack(ctx, &msg.Alert)
		}
		f.local.Publish(msg.Alert)
	}
}

// readBack fills in the event detail of an alert notified without it.
func (f *PGFanout) readBack(ctx context.Context, a *storage.Alert) {
	got, err := f.store.Alerts(ctx, storage.AlertFilter{Host: a.HostID, From: a.Timestamp, To: a.Timestamp.Add(time.Nanosecond), Limit: 1000})
	if err != nil {
		f.logger.Warn("reading back a large alert", "alert_id", a.AlertID, "err", err)
		return
	}
	for _, g := range got {
		if g.AlertID == a.AlertID {
			a.EventDetail = g.EventDetail
			return
		}
	}
}
