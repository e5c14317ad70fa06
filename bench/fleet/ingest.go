package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/storage"
)

// ingestDB names the databases of the ingest measurements, in both servers.
const ingestDB = "tripwire"

// ingest runs a collector on fresh databases, connects the agents, and measures live
// latency, then throughput, as asked.
func ingest(ctx context.Context, s *site, o options) ([]result, error) {
	if err := s.createDatabase(ctx, ingestDB); err != nil {
		return nil, err
	}
	if err := s.startCollector(ingestDB); err != nil {
		return nil, err
	}
	defer s.stopCollector()
	began := time.Now()
	agents := make([]*simAgent, o.agents)
	for i := range agents {
		name := fmt.Sprintf("bench-%03d", i+1)
		cert, err := pki.Issue(s.pkiDir(), name, pki.IssueOptions{})
		if err != nil {
			return nil, err
		}
		if agents[i], err = newSimAgent(name, s.grpcAddr, cert, o.batch, o.window, o.noticeEvery); err != nil {
			return nil, err
		}
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, a := range agents {
		wg.Go(func() {
			if err := a.run(actx); err != nil {
				fmt.Fprintln(os.Stderr, "bench/fleet:", err)
			}
		})
	}
	if err := waitFor(ctx, time.Minute, func() bool {
		for _, a := range agents {
			if a.hostID() == "" {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("agents registering: %w", err)
	}
	fmt.Printf("%d agents issued certificates and registered over mTLS in %v\n", len(agents), time.Since(began).Round(time.Millisecond))

	var results []result
	if slices.Contains(o.only, "latency") {
		rs, err := latency(ctx, s, agents, o)
		results = append(results, rs...)
		if err != nil {
			return results, fmt.Errorf("latency: %w", err)
		}
	}
	if slices.Contains(o.only, "throughput") {
		rs, err := throughput(ctx, s, agents, o)
		results = append(results, rs...)
		if err != nil {
			return results, fmt.Errorf("throughput: %w", err)
		}
	}
	return results, nil
}

// waitFor polls cond every 50 ms until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return errStopped
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// sleepCtx sleeps d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return errStopped
	case <-time.After(d):
		return nil
	}
}

// latency sends o.alertsMin alerts a minute, each from an agent picked at random, as
// Poisson arrivals, and times each from the send of its batch to its arrival on the
// collector's live stream.
func latency(ctx context.Context, s *site, agents []*simAgent, o options) ([]result, error) {
	var mu sync.Mutex
	sent := map[string]time.Time{}
	arrived := map[string]time.Time{}
	for _, a := range agents {
		a.mu.Lock()
		a.onSend = func(hostID string, seq uint64, at time.Time) {
			mu.Lock()
			sent[storage.AlertID(hostID, seq)] = at
			mu.Unlock()
		}
		a.mu.Unlock()
	}
	defer func() {
		for _, a := range agents {
			a.mu.Lock()
			a.onSend = nil
			a.mu.Unlock()
		}
	}()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subscribed, err := followSSE(sctx, "http://"+s.httpAddr+"/api/v1/alerts/stream", func(id string, at time.Time) {
		mu.Lock()
		arrived[id] = at
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	<-subscribed

	rng := rand.New(rand.NewPCG(4, 2026))
	mean := time.Minute / time.Duration(o.alertsMin)
	start := time.Now()
	next := start
	n := 0
	for {
		next = next.Add(time.Duration(rng.ExpFloat64() * float64(mean)))
		if next.Sub(start) >= o.latencyDur {
			break
		}
		if err := sleepCtx(ctx, time.Until(next)); err != nil {
			return nil, err
		}
		agents[rng.IntN(len(agents))].appendEvent()
		n++
	}
	// Every alert sent arrives, or 10 s pass.
	_ = waitFor(ctx, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(sent) < n {
			return false
		}
		for id := range sent {
			if _, ok := arrived[id]; !ok {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	missing := 0
	for id, t0 := range sent {
		if t1, ok := arrived[id]; ok {
			lat = append(lat, t1.Sub(t0))
		} else {
			missing++
		}
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("none of %d alerts arrived on the live stream", len(sent))
	}
	p := percentiles(lat)
	fmt.Printf("live: %d alerts in %v from %d agents (%d a minute, Poisson), %d arrived, %d missing: %s; load average %s\n",
		len(sent), o.latencyDur, len(agents), o.alertsMin, len(lat), missing, p, loadAvg())
	return []result{
		{name: fmt.Sprintf("ingest → live subscriber, %d alerts/min over %d agents, p50 / p90", o.alertsMin, len(agents)),
			measured: fmt.Sprintf("%v / %v (%d alerts, %d missing)", p.p50, p.p90, len(lat), missing)},
		{name: "ingest → live subscriber, p99 / max", measured: fmt.Sprintf("%v / %v", p.p99, p.max),
			goal: "p99 < 500 ms", met: ptr(p.p99 < 500*time.Millisecond && missing == 0)},
	}, nil
}

// followSSE calls arrive with the id of each event on the collector's live stream and
// the time it arrived; subscribed is closed once the collector has subscribed it.
func followSSE(ctx context.Context, url string, arrive func(id string, at time.Time)) (subscribed chan struct{}, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	subscribed = make(chan struct{})
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		first := true
		for sc.Scan() {
			line := sc.Text()
			if first && strings.HasPrefix(line, ": subscribed") {
				first = false
				close(subscribed)
			}
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				arrive(id, time.Now())
			}
		}
	}()
	return subscribed, nil
}

// throughput lets every agent send as fast as the collector acks, and measures what is
// acked over o.duration after o.warmup.
func throughput(ctx context.Context, s *site, agents []*simAgent, o options) ([]result, error) {
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.ch.Addr()}, Auth: clickhouse.Auth{Database: ingestDB}})
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	acked := func() (sum uint64) {
		for _, a := range agents {
			sum += a.Acked()
		}
		return sum
	}
	reconnects := func() (sum uint64) {
		for _, a := range agents {
			sum += a.reconnects()
		}
		return sum
	}
	mix := "events only"
	if o.noticeEvery > 0 {
		mix = fmt.Sprintf("1 entry in %d an agent notice, the rest events", o.noticeEvery)
	}
	fmt.Printf("throughput: %d agents sending flat out, batches of %d, window %d, %s; warm-up %v, then %v measured\n",
		len(agents), o.batch, o.window, mix, o.warmup, o.duration)
	for _, a := range agents {
		a.setUnbounded(true)
	}
	if err := sleepCtx(ctx, o.warmup); err != nil {
		return nil, err
	}
	a0, r0, t0 := acked(), reconnects(), time.Now()
	smp := startSampler(
		watched{name: "collector", pid: s.coll.Process.Pid},
		watched{name: "ClickHouse", pid: s.ch.PID()},
		watched{name: "PostgreSQL (postmaster and backends)", pid: s.pg.PID(), tree: true},
		watched{name: fmt.Sprintf("bench process (%d agents)", len(agents)), pid: os.Getpid()},
	)
	profiled := make(chan error, 1)
	if o.profile != "" {
		go func() { profiled <- fetchProfile(ctx, s.debugAddr, o.duration, o.profile) }()
	}
	var perSecond []float64
	maxParts := uint64(0)
	last, lastT := a0, t0
	for time.Since(t0) < o.duration {
		if err := sleepCtx(ctx, time.Second); err != nil {
			return nil, err
		}
		now, at := acked(), time.Now()
		perSecond = append(perSecond, float64(now-last)/at.Sub(lastT).Seconds())
		last, lastT = now, at
		var parts uint64
		if err := ch.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'entries' AND active", ingestDB).Scan(&parts); err == nil {
			maxParts = max(maxParts, parts)
		}
	}
	a1, r1, t1 := acked(), reconnects(), time.Now()
	use := smp.finish()
	if o.profile != "" {
		if err := <-profiled; err != nil {
			fmt.Fprintln(os.Stderr, "bench/fleet: profile:", err)
		} else {
			fmt.Println("collector CPU profile over the measured run:", o.profile)
		}
	}
	rate := float64(a1-a0) / t1.Sub(t0).Seconds()
	slices.Sort(perSecond)

	// Drain, then check that what was acked is what the stores hold.
	for _, a := range agents {
		a.setUnbounded(false)
	}
	if err := waitFor(ctx, 3*time.Minute, func() bool {
		for _, a := range agents {
			if a.Acked() != a.headSeq() {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("draining: %w", err)
	}
	pg, err := pgx.Connect(ctx, s.pgDSN(ingestDB))
	if err != nil {
		return nil, err
	}
	defer pg.Close(context.WithoutCancel(ctx))
	var heads, indexed, alerts int64
	if err := pg.QueryRow(ctx, `SELECT (SELECT COALESCE(sum(head_seq), 0) FROM chain_heads), (SELECT count(*) FROM chain_entries), (SELECT count(*) FROM alerts)`).Scan(&heads, &indexed, &alerts); err != nil {
		return nil, err
	}
	var rows, distinct uint64
	if err := ch.QueryRow(ctx, "SELECT count(), uniqExact(host_id, seq) FROM entries").Scan(&rows, &distinct); err != nil {
		return nil, err
	}
	all := acked()
	stored := "every acked entry stored once in both"
	if uint64(heads) != all || uint64(indexed) != all || distinct != all {
		stored = "MISMATCH"
	}
	fmt.Printf("after draining: agents acked %d entries in all; PostgreSQL heads sum to %d, chain_entries %d, alerts %d; ClickHouse holds %d distinct (host_id, seq) in %d rows: %s\n",
		all, heads, indexed, alerts, distinct, rows, stored)
	if rows > distinct {
		fmt.Printf("  %d ClickHouse rows are copies left by calls that failed after their ClickHouse insert (never shown; folded by merges)\n", rows-distinct)
	}
	if n, first := logLines(s.collectorLog(ingestDB), "level=ERROR"); n > 0 {
		fmt.Printf("  the collector logged %d errors; the first: %s\n", n, first)
	}
	// A stream handles heartbeats between batches: batches slow enough make the
	// dead-man switch mark live agents OFFLINE.
	offline, first := logLines(s.collectorLog(ingestDB), "marked OFFLINE")
	if offline > 0 {
		fmt.Printf("  the collector marked %d hosts OFFLINE though their agents were connected; the first: %s\n", offline, first)
	}
	if stored == "MISMATCH" {
		return nil, fmt.Errorf("acked entries and stored entries differ")
	}

	out := []result{{
		name:     fmt.Sprintf("%d agents → collector → ClickHouse + PostgreSQL, stored and acked (%s)", len(agents), mix),
		measured: fmt.Sprintf("%s events/s sustained over %v (%d acked; per second min %s, median %s, max %s; %d reconnects)", si(rate), t1.Sub(t0).Round(time.Second), a1-a0, si(perSecond[0]), si(perSecond[len(perSecond)/2]), si(perSecond[len(perSecond)-1]), r1-r0),
		goal:     "≥ 100k events/s; requirement 1,000 alerts/min", met: ptr(rate >= 100_000),
	}}
	for _, u := range use {
		out = append(out, result{name: "  CPU and memory: " + u.name, measured: fmt.Sprintf("%.0f %% of a core, %s %.0f MiB average, %.0f MiB max", u.cpuPercent, u.memory, u.rssAvgMiB, u.rssMaxMiB)})
	}
	var ours float64
	for _, u := range use {
		ours += u.cpuPercent / 100
	}
	out = append(out, result{name: "  the whole machine (shared VM)", measured: fmt.Sprintf("%.2f of %d cores busy, %.2f of them the processes above; load average %s at the end",
		smp.machineBusy, runtime.NumCPU(), ours, loadAvg())})
	out = append(out, result{name: "  hosts marked OFFLINE while connected (heartbeats wait behind batches)", measured: fmt.Sprint(offline), goal: "0", met: ptr(offline == 0)})
	out = append(out, result{name: "  ClickHouse active parts of entries, max", measured: fmt.Sprint(maxParts), goal: "< 300 (18.16 refuses inserts past it)", met: ptr(maxParts < 300)})
	return out, nil
}

// logLines counts the lines of a collector log holding what, and returns the first.
func logLines(path, what string) (n int, first string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, what) {
			if n == 0 {
				first = line
			}
			n++
		}
	}
	return n, first
}

// fetchProfile writes a CPU profile of the collector over d to path.
func fetchProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pct are the percentiles of a sample.
type pct struct{ p50, p90, p99, max time.Duration }

func (p pct) String() string {
	return fmt.Sprintf("p50 %v, p90 %v, p99 %v, max %v", p.p50, p.p90, p.p99, p.max)
}

func percentiles(d []time.Duration) pct {
	slices.Sort(d)
	at := func(q float64) time.Duration {
		return d[min(len(d)-1, int(q*float64(len(d))))].Round(10 * time.Microsecond)
	}
	return pct{at(0.50), at(0.90), at(0.99), d[len(d)-1].Round(10 * time.Microsecond)}
}

// si prints a rate with a k or M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
