package live

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/storage"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// fakeStore answers readBack's one query; everything else is unused here.
type fakeStore struct {
	storage.Store
	held storage.Alert
}

func (s fakeStore) Alerts(ctx context.Context, f storage.AlertFilter) ([]storage.Alert, error) {
	if f.Host == s.held.HostID && !s.held.Timestamp.Before(f.From) && s.held.Timestamp.Before(f.To) {
		return []storage.Alert{s.held}, nil
	}
	return nil, nil
}

// TestPGFanoutReachesEveryReplica: two collectors sharing one PostgreSQL, one
// subscriber each; an alert published by either reaches both subscribers exactly once,
// and one too large to notify whole arrives with its detail read back from the store.
func TestPGFanoutReachesEveryReplica(t *testing.T) {
	dsn := testservers.PostgreSQL(t)
	big := storage.Alert{AlertID: "big", HostID: "h1", Seq: 3, Timestamp: time.Unix(1700000000, 5).UTC(),
		EventDetail: storage.RawJSON(`{"cmdline":"` + strings.Repeat("x", 9000) + `"}`)}
	store := fakeStore{held: big}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		brokers [2]*Broker
		fanouts [2]*PGFanout
		subs    [2]*Subscription
	)
	for i := range 2 {
		brokers[i] = NewBroker(0)
		fanouts[i] = NewPGFanout(dsn, brokers[i], store, nil)
		subs[i] = brokers[i].Subscribe()
		go fanouts[i].Run(ctx)
	}
	// LISTEN is in place once a probe published by replica 0 reaches both.
	deadline := time.Now().Add(10 * time.Second)
	for ready := [2]bool{}; !ready[0] || !ready[1]; {
		if time.Now().After(deadline) {
			t.Fatal("LISTEN not in place after 10 s")
		}
		fanouts[0].Publish(storage.Alert{AlertID: "probe"})
		time.Sleep(50 * time.Millisecond)
		for i := range 2 {
		drain:
			for {
				select {
				case a := <-subs[i].C:
					ready[i] = ready[i] || a.AlertID == "probe"
				default:
					break drain
				}
			}
		}
	}

	fanouts[0].Publish(storage.Alert{AlertID: "a1", Host: "web-01", Severity: "CRITICAL"})
	fanouts[1].Publish(storage.Alert{AlertID: "a2"}, big)
	for i := range 2 {
		var got []string
		timeout := time.After(5 * time.Second)
		for len(got) < 3 {
			select {
			case a := <-subs[i].C:
				if a.AlertID == "probe" {
					continue
				}
				got = append(got, a.AlertID)
				if a.AlertID == "a1" && (a.Host != "web-01" || a.Severity != "CRITICAL") {
					t.Errorf("replica %d: a1 arrived as %+v", i, a)
				}
				if a.AlertID == "big" && string(a.EventDetail) != string(big.EventDetail) {
					t.Errorf("replica %d: the large alert's detail was not read back (%d bytes)", i, len(a.EventDetail))
				}
			case <-timeout:
				t.Fatalf("replica %d got %v within 5 s, want a1, a2, big", i, got)
			}
		}
		select {
		case a := <-subs[i].C:
			if a.AlertID != "probe" {
				t.Errorf("replica %d got %s twice or extra", i, a.AlertID)
			}
		case <-time.After(300 * time.Millisecond):
		}
	}

	// A batch's alerts go out in one statement and arrive whole and in order.
	var batch []storage.Alert
	for n := range 200 {
		batch = append(batch, storage.Alert{AlertID: fmt.Sprintf("b%03d", n), Seq: uint64(n + 1)})
	}
	fanouts[1].Publish(batch...)
	for i := range 2 {
		timeout := time.After(5 * time.Second)
		for n := 0; n < len(batch); {
			select {
			case a := <-subs[i].C:
				if a.AlertID == "probe" {
					continue
				}
				if a.AlertID != batch[n].AlertID {
					t.Fatalf("replica %d: alert %d of the batch is %s, want %s", i, n, a.AlertID, batch[n].AlertID)
				}
				n++
			case <-timeout:
				t.Fatalf("replica %d got %d of %d batch alerts within 5 s", i, n, len(batch))
			}
		}
	}
}
