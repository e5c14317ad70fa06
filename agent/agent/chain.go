package agent

import (
	"fmt"
	"sync"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// durableChain is the audit log as the pipeline and the shipper share it, able to be
// reopened after a write failure (a full disk, an I/O error): audit.Log refuses every
// append after its first write error, and reopening it repairs the torn tail and records
// the repair. It is safe for concurrent use.
type durableChain struct {
	dir  string
	opts audit.Options

	mu  sync.RWMutex
	log *audit.Log

	// appended is pulsed after every successful append, whichever Log took it, so the
	// shipper's wait survives a reopen.
	appended chan struct{}
}

func openChain(dir string, opts audit.Options) (*durableChain, error) {
	log, err := audit.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return &durableChain{dir: dir, opts: opts, log: log, appended: make(chan struct{}, 1)}, nil
}

// Append appends payloads durably (see audit.Log.Append).
func (c *durableChain) Append(payloads ...chain.Payload) error {
	c.mu.RLock()
	_, err := c.log.Append(payloads...)
	c.mu.RUnlock()
	if err == nil {
		select {
		case c.appended <- struct{}{}:
		default:
		}
	}
	return err
}

// Reopen closes the log and opens it again, which cuts off and records whatever a failed
// write left half done. On failure the old, broken log stays in place.
func (c *durableChain) Reopen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.log.Close() // a broken log may fail to flush: that is why we are here
	log, err := audit.Open(c.dir, c.opts)
	if err != nil {
		// c.log stays the closed log: readers get audit.ErrClosed (the shipper backs
		// off) until a later Reopen succeeds.
		return fmt.Errorf("reopening audit chain: %w", err)
	}
	c.log = log
	return nil
}

// countHeld returns how many event and gap entries follow seq after in the chain: after
// a failed append and a reopen, the leading payloads of that append that reached the
// disk whole. Anchors, truncation records and agent notices written meanwhile are not
// the pipeline's payloads and are not counted.
func (c *durableChain) countHeld(after uint64) (int, error) {
	n := 0
	for next := after + 1; ; {
		entries, err := c.ReadFrom(next, 512)
		if err != nil {
			return 0, err
		}
		if len(entries) == 0 {
			return n, nil
		}
		for _, e := range entries {
			if e.Kind == string(chain.KindEvent) || e.Kind == string(chain.KindGap) {
				n++
			}
		}
		next = entries[len(entries)-1].Seq + 1
	}
}

// Close closes the log.
func (c *durableChain) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.Close()
}

// Head returns the durable head (transport.Chain).
func (c *durableChain) Head() (uint64, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.log.Head()
}

// ReadFrom reads durable entries (transport.Chain).
func (c *durableChain) ReadFrom(seq uint64, max int) ([]batch.Entry, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.log.ReadFrom(seq, max)
}

// Acked returns the collector's acked seq (transport.Chain).
func (c *durableChain) Acked() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.log.Acked()
}

// SetAcked records the collector's ack (transport.Chain).
func (c *durableChain) SetAcked(seq uint64) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.log.SetAcked(seq)
}

// Appended is pulsed after appends (transport.Chain).
func (c *durableChain) Appended() <-chan struct{} { return c.appended }

// SizeBytes is the size of the segments on disk.
func (c *durableChain) SizeBytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.log.SizeBytes()
}
