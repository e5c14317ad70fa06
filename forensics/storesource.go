package forensics

import (
	"context"
	"fmt"

	"github.com/tripwire-project/tripwire/storage"
)

// storePage is how many entries StoreSource asks the store for at a time.
const storePage = 1000

// StoreSource reads chains through the collector's storage.Store interface, so it works
// on every backend, in particular ClickHouse + PostgreSQL (storage/fleet), which a
// running collector shares: unlike the DuckDB file, nothing needs stopping. Entries are
// read in pages of storePage in seq order; each page costs the store an offset scan, so
// a very long chain exports in time that grows faster than its length (use --from/--to
// to cut it).
type StoreSource struct {
	store storage.Store
	name  string
}

// NewStoreSource reads from store; name describes it in the export's metadata (never a
// DSN: it may hold a password). The source closes the store when it is closed.
func NewStoreSource(store storage.Store, name string) *StoreSource {
	return &StoreSource{store: store, name: name}
}

// Describe implements Source.
func (s *StoreSource) Describe() string { return s.name }

// Hosts implements Source: every registered host, with the chain head the collector
// stored for it.
func (s *StoreSource) Hosts(ctx context.Context) ([]Host, error) {
	hosts, err := s.store.Hosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing hosts of %s: %w", s.name, err)
	}
	out := make([]Host, 0, len(hosts))
	for _, h := range hosts {
		seq, hash, err := s.store.Head(ctx, h.HostID)
		if err != nil {
			return nil, fmt.Errorf("reading the chain head of host %q: %w", h.HostID, err)
		}
		name := h.Hostname
		if name == "" {
			name = h.HostID
		}
		out = append(out, Host{ID: h.HostID, Name: name, HeadSeq: seq, HeadHash: hash, ForkOf: h.ForkOf, ForkSeq: h.ForkSeq})
	}
	return out, nil
}

// Entries implements Source, in seq order. Time, kind, type, rule and severity are read
// from the payload, as for the other sources, so that every source exports one chain
// identically.
func (s *StoreSource) Entries(ctx context.Context, hostID string, fn func(*Entry) error) error {
	e := &Entry{HostID: hostID}
	for offset := 0; ; offset += storePage {
		page, err := s.store.Audit(ctx, storage.AuditFilter{Host: hostID, Limit: storePage, Offset: offset})
		if err != nil {
			return fmt.Errorf("reading entries of host %q from %s: %w", hostID, s.name, err)
		}
		for _, a := range page {
			if a.HostID != hostID { // Host also matches names: keep to the one chain
				continue
			}
			e.Seq, e.PrevHash, e.Hash, e.Payload = a.Seq, a.PrevHash, a.Hash, []byte(a.Payload)
			setMeta(e, e.Payload)
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < storePage {
			return nil
		}
	}
}

// Close implements Source.
func (s *StoreSource) Close() error {
	if err := s.store.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", s.name, err)
	}
	return nil
}
