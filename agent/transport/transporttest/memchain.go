// Package transporttest holds test helpers for code that ships chains or receives them:
// an agent's audit chain held in memory, which the real shipper (transport.Shipper) can
// send, so that tests of the shipper and of the collector drive one without a disk.
package transporttest

import (
	"slices"
	"sync"

	"github.com/tripwire-project/tripwire/proto/batch"
)

// MemChain is an agent's audit chain in memory. It satisfies transport.Chain and is
// safe for concurrent use, as that interface asks: the shipper reads while a test
// appends.
type MemChain struct {
	mu       sync.Mutex
	entries  []batch.Entry
	acked    uint64
	appended chan struct{}
}

// NewMemChain returns a chain holding entries, which must be consecutive from seq 1.
func NewMemChain(entries []batch.Entry) *MemChain {
	return &MemChain{entries: slices.Clone(entries), appended: make(chan struct{}, 1)}
}

// Add appends entries, as the agent's pipeline does, and wakes the shipper.
func (c *MemChain) Add(entries ...batch.Entry) {
	c.mu.Lock()
	c.entries = append(c.entries, entries...)
	c.mu.Unlock()
	select {
	case c.appended <- struct{}{}:
	default:
	}
}

// All returns a copy of every entry.
func (c *MemChain) All() []batch.Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.entries)
}

// Len returns the number of entries.
func (c *MemChain) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Head returns the last entry's seq and hash (0 and "" when empty).
func (c *MemChain) Head() (uint64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) == 0 {
		return 0, ""
	}
	last := c.entries[len(c.entries)-1]
	return last.Seq, last.Hash
}

// ReadFrom returns up to n consecutive entries from seq (seq 0 reads from 1).
func (c *MemChain) ReadFrom(seq uint64, n int) ([]batch.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq = max(seq, 1)
	if seq > uint64(len(c.entries)) {
		return nil, nil
	}
	end := min(uint64(len(c.entries)), seq-1+uint64(n))
	return slices.Clone(c.entries[seq-1 : end]), nil
}

// Acked returns the highest seq SetAcked recorded.
func (c *MemChain) Acked() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

// SetAcked records seq as acked; the acked seq never moves back.
func (c *MemChain) SetAcked(seq uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acked = max(c.acked, seq)
	return nil
}

// Appended receives a value after Add.
func (c *MemChain) Appended() <-chan struct{} { return c.appended }
