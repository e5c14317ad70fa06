package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
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
	fmt.Printf("query: stored %d events of %d hosts over %d days through the store (AppendEntries, 10,000 per call, 4 at a time) in %v: %s events/s\n",
		o.queryEvents, o.queryHosts, o.queryDays, took.Round(time.Second), si(float64(o.queryEvents)/took.Seconds()))

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
			rows, err := ch.Query(ctx, `SELECT seq, ts, tripwire_type, rule_name, severity, payload FROM entries
				WHERE host_id = ? AND ts >= ? AND ts < ? AND kind = 'event'
				ORDER BY ts DESC, seq DESC `+limit, h.id, from.UnixNano(), to.UnixNano())
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
	var results []result
	for _, q := range []timed{
		{"API GET /api/v1/alerts?host=NAME&from&to (24 h), first page of 100", true, api(0)},
		{"API, same, limit=1000 (the largest page)", true, api(1000)},
		{"ClickHouse SQL, newest 100 of the host's 24 h (reference)", false, direct("LIMIT 100")},
		{fmt.Sprintf("ClickHouse SQL, all the host's 24 h (~%d rows, reference)", perDay), false, direct("")},
	} {
		// A few calls first: the first after the load pays for cold caches.
		var cold time.Duration
		for i := range 3 {
			to := time.Now().UTC()
			t0 := time.Now()
			if _, err := q.call(hosts[rng.IntN(len(hosts))], to.Add(-24*time.Hour), to); err != nil {
				return results, fmt.Errorf("%s: %w", q.name, err)
			}
			if i == 0 {
				cold = time.Since(t0)
			}
		}
		lat := make([]time.Duration, 0, o.queryRuns)
		rowsSeen := 0
		for range o.queryRuns {
			to := time.Now().UTC()
			t0 := time.Now()
			n, err := q.call(hosts[rng.IntN(len(hosts))], to.Add(-24*time.Hour), to)
			if err != nil {
				return results, fmt.Errorf("%s: %w", q.name, err)
			}
			lat = append(lat, time.Since(t0))
			rowsSeen += n
		}
		p := percentiles(lat)
		fmt.Printf("  %s: %s (%d calls, random hosts, %.0f rows a call; first call %v)\n", q.name, p, o.queryRuns, float64(rowsSeen)/float64(o.queryRuns), cold.Round(10*time.Microsecond))
		r := result{name: fmt.Sprintf("query (%d events): %s, p50 / p99", o.queryEvents, q.name), measured: fmt.Sprintf("%v / %v", p.p50, p.p99)}
		if q.api {
			r.goal, r.met = "< 100 ms", ptr(p.p99 < 100*time.Millisecond)
		}
		results = append(results, r)
	}
	return results, nil
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
// store in large calls, so that the databases hold exactly what ingest would have
// stored.
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
	const per = 10_000
	start := time.Now()
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for hi, h := range hosts {
		g.Go(func() error {
			prev := chain.GenesisPrev
			// Hosts' events interleave: host hi's j-th event is at j*step + hi*step/hosts.
			first := end.Add(-span).Add(time.Duration(hi) * step / time.Duration(len(hosts)))
			for j := 0; j < perHost; {
				es := make([]batch.Entry, 0, per)
				for ; len(es) < per && j < perHost; j++ {
					e := makeEntry(uint64(j+1), first.Add(time.Duration(j)*step), prev, false)
					prev = e.Hash
					es = append(es, e)
				}
				if err := st.AppendEntries(gctx, h.id, es); err != nil {
					return err
				}
				if n := done.Add(int64(len(es))); n%1_000_000 < per {
					fmt.Printf("  %d events stored in %v\n", n, time.Since(start).Round(time.Second))
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	return hosts, time.Since(start), nil
}
