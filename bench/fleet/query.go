package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/fleet"
)

// queryDB names the databases of the query measurement, in both servers.
const queryDB = "tripwire_query"

// queryHost is a host of the query store.
type queryHost struct{ id, name string }

// query fills a store with o.queryEvents events and times one host's alerts over the
// last 24 h, through the collector's API and straight from ClickHouse.
func query(ctx context.Context, s *site, o options) ([]result, error) {
	if err := s.createDatabase(ctx, queryDB); err != nil {
		return nil, err
	}
	end := time.Now().UTC()
	hosts, took, err := fill(ctx, s, o, end)
	if err != nil {
		return nil, fmt.Errorf("filling the store: %w", err)
	}
	fmt.Printf("query: stored %d events of %d hosts over %d days through the store (AppendEntries, %d per call, %d at a time, in time order) in %v: %s events/s\n",
		o.queryEvents, o.queryHosts, o.queryDays, fillSlice, fillCallers, took.Round(time.Second), si(float64(o.queryEvents)/took.Seconds()))

	if err := s.startCollector(queryDB); err != nil {
		return nil, err
	}
	defer s.stopCollector()
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.ch.Addr()}, Auth: clickhouse.Auth{Database: queryDB}, ReadTimeout: time.Minute})
	if err != nil {
		return nil, err
	}
	defer ch.Close()

	perDay := o.queryEvents / o.queryHosts / o.queryDays
	rng := rand.New(rand.NewPCG(7, 2026))
	parts := func() string {
		var n, merging uint64
		if err := ch.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'entries' AND active", queryDB).Scan(&n); err != nil {
			return "?"
		}
		if err := ch.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", queryDB).Scan(&merging); err != nil {
			return "?"
		}
		return fmt.Sprintf("%d active parts, %d merging", n, merging)
	}
	type timed struct {
		name string
		api  bool
		call func(h queryHost, from, to time.Time) (int, error)
	}
	api := func(limit int) func(h queryHost, from, to time.Time) (int, error) {
		return func(h queryHost, from, to time.Time) (int, error) {
			return apiAlerts(ctx, s.httpAddr, h.name, from, to, limit)
		}
	}
	direct := func(limit string) func(h queryHost, from, to time.Time) (int, error) {
		return func(h queryHost, from, to time.Time) (int, error) {
			// As the store's reads: the key columns in PREWHERE (payloads are read only
			// of granules holding the host's rows), the month partitions named.
			rows, err := ch.Query(ctx, `SELECT seq, ts, tripwire_type, rule_name, severity, payload FROM entries
				PREWHERE host_id = ? AND ts >= ? AND ts < ?
				WHERE kind = 'event' AND month >= ? AND month <= ?
				ORDER BY ts DESC, seq DESC `+limit, h.id, from.UnixNano(), to.UnixNano(), month(from), month(to.Add(-time.Nanosecond)))
			if err != nil {
				return 0, err
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				var seq uint64
				var ts int64
				var typ, rule, sev, payload string
				if err := rows.Scan(&seq, &ts, &typ, &rule, &sev, &payload); err != nil {
					return n, err
				}
				n++
			}
			return n, rows.Err()
		}
	}
	queries := []timed{
		{"API GET /api/v1/alerts?host=NAME&from&to (24 h), first page of 100", true, api(0)},
		{"API, same, limit=1000 (the largest page)", true, api(1000)},
		{"ClickHouse SQL, newest 100 of the host's 24 h, payloads included (reference)", false, direct("LIMIT 100")},
		{fmt.Sprintf("ClickHouse SQL, all the host's 24 h, ~%d rows with payloads (reference)", perDay), false, direct("")},
	}
	var results []result
	// Right after the load, ClickHouse is still merging the parts the load made; a
	// store that has run for a while has merged them. The first page is timed both ways.
	fmt.Printf("  just after the load (ClickHouse: %s):\n", parts())
	if _, err := timeQuery(rng, hosts, queries[0].name, queries[0].call, o.queryRuns); err != nil {
		return results, err
	}
	settled := time.Now()
	if err := waitFor(ctx, 10*time.Minute, func() bool {
		var merging uint64
		err := ch.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", queryDB).Scan(&merging)
		return err == nil && merging == 0
	}); err != nil {
		return results, fmt.Errorf("waiting for ClickHouse's merges: %w", err)
	}
	fmt.Printf("  after ClickHouse's merges ended (%v later; %s):\n", time.Since(settled).Round(time.Second), parts())
	for _, q := range queries {
		p, err := timeQuery(rng, hosts, q.name, q.call, o.queryRuns)
		if err != nil {
			return results, err
		}
		r := result{name: fmt.Sprintf("query (%d events): %s, p50 / p99", o.queryEvents, q.name), measured: fmt.Sprintf("%v / %v", p.p50, p.p99)}
		if q.api {
			r.goal, r.met = "< 100 ms", ptr(p.p99 < 100*time.Millisecond)
		}
		results = append(results, r)
	}
	return results, nil
}

// timeQuery calls q a few times to warm it, then runs times, each for a random host's
// last 24 h, and prints and returns the percentiles.
func timeQuery(rng *rand.Rand, hosts []queryHost, name string, q func(h queryHost, from, to time.Time) (int, error), runs int) (pct, error) {
	// A few calls first: the first after the load pays for cold caches.
	var cold time.Duration
	for i := range 3 {
		to := time.Now().UTC()
		t0 := time.Now()
		if _, err := q(hosts[rng.IntN(len(hosts))], to.Add(-24*time.Hour), to); err != nil {
			return pct{}, fmt.Errorf("%s: %w", name, err)
		}
		if i == 0 {
			cold = time.Since(t0)
		}
	}
	lat := make([]time.Duration, 0, runs)
	rowsSeen := 0
	for range runs {
		to := time.Now().UTC()
		t0 := time.Now()
		n, err := q(hosts[rng.IntN(len(hosts))], to.Add(-24*time.Hour), to)
		if err != nil {
			return pct{}, fmt.Errorf("%s: %w", name, err)
		}
		lat = append(lat, time.Since(t0))
		rowsSeen += n
	}
	p := percentiles(lat)
	fmt.Printf("    %s: %s (%d calls, random hosts, %.0f rows a call; first call %v)\n", name, p, runs, float64(rowsSeen)/float64(runs), cold.Round(10*time.Microsecond))
	return p, nil
}

// month is the entries partition of t: its UTC year*100+month.
func month(t time.Time) uint32 {
	u := t.UTC()
	return uint32(u.Year()*100 + int(u.Month()))
}

// apiAlerts calls GET /api/v1/alerts and returns how many alerts came back.
func apiAlerts(ctx context.Context, addr, host string, from, to time.Time, limit int) (int, error) {
	q := url.Values{"host": {host}, "from": {from.Format(time.RFC3339Nano)}, "to": {to.Format(time.RFC3339Nano)}}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/alerts?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	var body struct {
		Alerts []json.RawMessage `json:"alerts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if len(body.Alerts) == 0 {
		return 0, fmt.Errorf("no alerts for host %s over 24 h", host)
	}
	return len(body.Alerts), nil
}

// fill stores o.queryEvents events, o.queryEvents/o.queryHosts per host, each host's a
// valid chain spread evenly over the o.queryDays days before end. It writes through the
// store, so that the databases hold exactly what ingest would have stored, and in time
// order across hosts, as a fleet's entries arrive (each slice of time for every host,
// then the next), so that rows lie in the tables as they would.
func fill(ctx context.Context, s *site, o options, end time.Time) ([]queryHost, time.Duration, error) {
	st, err := fleet.Open(ctx, fleet.Options{
		ClickHouseAddr: s.ch.Addr(), ClickHouseDatabase: queryDB, PostgresDSN: s.pgDSN(queryDB),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, 0, err
	}
	defer st.Close()
	hosts := make([]queryHost, o.queryHosts)
	for i := range hosts {
		hosts[i] = queryHost{id: uuid.NewString(), name: fmt.Sprintf("query-%03d", i+1)}
		if err := st.RegisterHost(ctx, storage.Host{HostID: hosts[i].id, Hostname: hosts[i].name, OS: "linux", Arch: "amd64",
			Kernel: "bench", AgentVersion: "bench", ProtocolVersion: 2, Watchers: "[]", FirstSeen: end, LastSeen: end}); err != nil {
			return nil, 0, err
		}
	}
	perHost := o.queryEvents / o.queryHosts
	span := time.Duration(o.queryDays) * 24 * time.Hour
	step := span / time.Duration(perHost)
	prev := make([]string, len(hosts))
	for i := range prev {
		prev[i] = chain.GenesisPrev
	}
	start := time.Now()
	reported := 0
	for from := 0; from < perHost; from += fillSlice {
		to := min(from+fillSlice, perHost)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(fillCallers)
		for hi, h := range hosts {
			g.Go(func() error {
				// Hosts' events interleave: host hi's j-th event is at j*step + hi*step/hosts.
				first := end.Add(-span).Add(time.Duration(hi) * step / time.Duration(len(hosts)))
				es := make([]batch.Entry, 0, to-from)
				for j := from; j < to; j++ {
					e := makeEntry(uint64(j+1), first.Add(time.Duration(j)*step), prev[hi], false)
					prev[hi] = e.Hash
					es = append(es, e)
				}
				return st.AppendEntries(gctx, h.id, es)
			})
		}
		if err := g.Wait(); err != nil {
			return nil, 0, err
		}
		if done := to * len(hosts); done-reported >= 1_000_000 || to == perHost {
			reported = done
			fmt.Printf("  %d events stored in %v\n", done, time.Since(start).Round(time.Second))
		}
	}
	return hosts, time.Since(start), nil
}

const (
	// fillSlice is how many of each host's entries one AppendEntries call of the fill
	// holds: 2,000 entries are 4.8 hours of a host at 10M events over 100 hosts and 10
	// days.
	fillSlice = 2000
	// fillCallers is how many calls of the fill are made at once: the store writes them
	// in groups, as it does a collector's.
	fillCallers = 16
)
