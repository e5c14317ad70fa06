package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/internal/testservers"
)

// follow subscribes to a collector's live alert stream and sends each alert's id.
func follow(ctx context.Context, t *testing.T, httpAddr, token string) <-chan string {
	t.Helper()
	return streamLines(ctx, t, httpAddr, token, "id: ")
}

// streamLines subscribes to a collector's live alert stream and sends the rest of each
// line that starts with prefix.
func streamLines(ctx context.Context, t *testing.T, httpAddr, token, prefix string) <-chan string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/v1/alerts/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	ids := make(chan string, 1000)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				ids <- id
			}
		}
	}()
	return ids
}

// TestTwoCollectorsBothSeeEveryAlert: two collector processes share one PostgreSQL and
// one ClickHouse; the agent streams to the first; a live subscriber on each sees every
// alert exactly once — no sticky sessions.
func TestTwoCollectorsBothSeeEveryAlert(t *testing.T) {
	requireRoot(t)
	ch := testservers.ClickHouse(t)
	pg := testservers.PostgreSQL(t)
	e := newEnv(t)
	fleet := fmt.Sprintf("storage:\n  clickhouse: {addr: %q, database: %q}\n  postgres: {dsn: %q}\n", ch.Addr, ch.Database, pg)
	cfgA := filepath.Join(e.dir, "collector.yaml")
	text, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfgA, strings.Replace(string(text), "storage: {duckdb: data/tripwire.duckdb}\n", fleet, 1))
	e.startCollector()

	// Replica B: same PKI and stores, its own ports.
	b := &env{t: t, dir: e.dir, grpcAddr: freeAddr(t), httpAddr: freeAddr(t), token: e.token}
	cfgB := filepath.Join(e.dir, "collector-b.yaml")
	textA, _ := os.ReadFile(cfgA)
	writeFile(t, cfgB, strings.NewReplacer(e.grpcAddr, b.grpcAddr, e.httpAddr, b.httpAddr).Replace(string(textA)))
	b.coll = b.serve(cfgB, &b.grpcAddr, &b.httpAddr)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	subA, subB := follow(ctx, t, e.httpAddr, e.token), follow(ctx, t, b.httpAddr, b.token)
	time.Sleep(500 * time.Millisecond) // both LISTENs in place

	decoy, cfg, hz := e.decoyAgentConfig("fleet-01", "CRITICAL")
	e.startAgent(cfg, hz)
	const reads = 5
	for range reads {
		asNobody(t, "cat", decoy)
	}
	want := map[string]bool{}
	waitFor(t, 10*time.Second, "all reads stored", func() (bool, string) {
		alerts, err := e.alerts("host=fleet-01&limit=1000")
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			want[a.AlertID] = true
		}
		return len(want) == reads, fmt.Sprintf("%d alerts", len(want))
	})
	for name, sub := range map[string]<-chan string{"A (the agent's)": subA, "B": subB} {
		got := map[string]int{}
		timeout := time.After(5 * time.Second)
		for len(got) < reads {
			select {
			case id := <-sub:
				got[id]++
			case <-timeout:
				t.Fatalf("replica %s saw %d of %d alerts live", name, len(got), reads)
			}
		}
		select {
		case id := <-sub:
			got[id]++
		case <-time.After(500 * time.Millisecond):
		}
		for id, n := range got {
			if !want[id] || n != 1 {
				t.Errorf("replica %s: alert %s seen %d times (stored: %v)", name, id, n, want[id])
			}
		}
	}
}

// TestFleetStoreOutageLosesNothing: the real agent streams to a collector on ClickHouse
// and PostgreSQL; each store in turn is stopped while processes keep reading the decoy.
// The collector stops acking (the agent's queue grows, nothing is acked that a store
// does not hold) and delivery resumes by itself when the store is back: every read
// arrives, once.
func TestFleetStoreOutageLosesNothing(t *testing.T) {
	requireRoot(t)
	pg, ch := testservers.PrivatePostgreSQL(t), testservers.PrivateClickHouse(t)
	e := newEnv(t)
	cfgPath := filepath.Join(e.dir, "collector.yaml")
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	fleet := fmt.Sprintf("storage:\n  clickhouse: {addr: %q, database: tripwire}\n  postgres: {dsn: %q}\n", ch.Addr(), pg.DSN())
	writeFile(t, cfgPath, strings.Replace(string(text), "storage: {duckdb: data/tripwire.duckdb}\n", fleet, 1))
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("outage-01", "WARN")
	e.startAgent(cfg, hz)

	queue := func() (uint64, error) {
		var h healthzReport
		err := getJSON("http://"+hz+"/healthz", "", &h)
		return h.QueueDepth, err
	}
	pids := map[int]bool{}
	read := func(n int) {
		t.Helper()
		for range n {
			pids[asNobody(t, "cat", decoy)] = true
		}
	}
	read(5)
	for _, srv := range []struct {
		name string
		p    *testservers.Private
	}{{"ClickHouse", ch}, {"PostgreSQL", pg}} {
		srv.p.Stop(t)
		read(10)
		// Nothing read during the outage can be acked: the agent holds it.
		waitFor(t, 15*time.Second, "the reads queued on the agent while "+srv.name+" is down", func() (bool, string) {
			q, err := queue()
			return err == nil && q >= 10, fmt.Sprintf("queue %d %v", q, err)
		})
		srv.p.Start(t)
		waitFor(t, 60*time.Second, "the queue drained after "+srv.name+" came back", func() (bool, string) {
			q, err := queue()
			return err == nil && q == 0, fmt.Sprintf("queue %d %v", q, err)
		})
	}
	var alerts []alert
	waitFor(t, 15*time.Second, "every read stored", func() (bool, string) {
		alerts, err = e.alerts("host=outage-01&limit=1000")
		return err == nil && len(alerts) >= len(pids), fmt.Sprintf("%d of %d alerts, %v", len(alerts), len(pids), err)
	})
	seen := map[int]int{}
	for _, a := range alerts {
		seen[a.EventDetail.PID]++
	}
	for pid := range pids {
		if seen[pid] != 1 {
			t.Errorf("read by pid %d stored %d times, want once", pid, seen[pid])
		}
	}
	if len(alerts) != len(pids) {
		t.Errorf("%d alerts for %d reads", len(alerts), len(pids))
	}
}
