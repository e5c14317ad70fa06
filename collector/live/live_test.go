package live

import (
	"testing"

	"github.com/tripwire-project/tripwire/storage"
)

func TestBrokerDeliversToEverySubscriber(t *testing.T) {
	b := NewBroker(4)
	s1, s2 := b.Subscribe(), b.Subscribe()
	defer s1.Close()
	defer s2.Close()
	b.Publish(storage.Alert{Seq: 1}, storage.Alert{Seq: 2})
	for _, s := range []*Subscription{s1, s2} {
		for want := uint64(1); want <= 2; want++ {
			if a := <-s.C; a.Seq != want {
				t.Fatalf("got seq %d, want %d", a.Seq, want)
			}
		}
	}
}

func TestBrokerCutsOffSlowSubscriber(t *testing.T) {
	b := NewBroker(2)
	slow, fast := b.Subscribe(), b.Subscribe()
	defer fast.Close()
	for i := uint64(1); i <= 3; i++ {
		b.Publish(storage.Alert{Seq: i})
		<-fast.C
	}
	n := 0
	for range slow.C { // closed after the two buffered alerts
		n++
	}
	if n != 2 || !slow.Dropped() {
		t.Fatalf("slow subscriber got %d alerts, dropped=%v; want 2 then cut off", n, slow.Dropped())
	}
	if b.Subscribers() != 1 {
		t.Fatalf("subscribers = %d, want 1", b.Subscribers())
	}
	slow.Close() // after being cut off: no panic
}
