// Package live fans alerts out to live subscribers (the API's follow stream, later the
// Grafana plugin) inside one collector process. Delivery is best effort by design: the
// store is the record, and a subscriber that falls behind is cut off (its channel closed)
// rather than allowed to slow ingest; it reconnects and catches up from the API.
package live

import (
	"sync"

	"github.com/tripwire-project/tripwire/storage"
)

// DefaultBuffer is how many alerts a subscriber may fall behind before it is cut off.
const DefaultBuffer = 1024

// Broker distributes published alerts to every current subscriber. It is safe for
// concurrent use.
type Broker struct {
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	buffer int
}

// Subscription receives alerts on C until it is closed, by Close or because it fell
// behind (then Dropped reports true).
type Subscription struct {
	C       <-chan storage.Alert
	c       chan storage.Alert
	b       *Broker
	dropped bool
}

// NewBroker returns a broker whose subscribers each buffer up to buffer alerts
// (DefaultBuffer if buffer <= 0).
func NewBroker(buffer int) *Broker {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Broker{subs: map[*Subscription]struct{}{}, buffer: buffer}
}

// Subscribe starts a subscription. The caller must Close it.
func (b *Broker) Subscribe() *Subscription {
	c := make(chan storage.Alert, b.buffer)
	s := &Subscription{C: c, c: c, b: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish sends alerts to every subscriber without blocking; a subscriber whose buffer
// is full is cut off.
func (b *Broker) Publish(alerts ...storage.Alert) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for _, a := range alerts {
			select {
			case s.c <- a:
			default:
				s.dropped = true
				delete(b.subs, s)
				close(s.c)
			}
			if s.dropped {
				break
			}
		}
	}
}

// Subscribers returns the number of current subscribers.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if _, ok := s.b.subs[s]; ok {
		delete(s.b.subs, s)
		close(s.c)
	}
}

// Dropped reports whether the subscription was cut off for falling behind.
func (s *Subscription) Dropped() bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.dropped
}
