// Command fleet measures the collector on the fleet store (ClickHouse history and
// PostgreSQL index, storage/fleet) against issue 4's goals, with the real binaries:
//
//   - throughput: -agents simulated agents in this process (each its own host
//     certificate, its own valid hash chain, real Arrow batches over the real gRPC/mTLS
//     IngestService stream with the shipper's window, ack and resend discipline) send as
//     fast as the collector acks; the events/s stored and acked over -duration after
//     -warmup, and the CPU and RSS of the collector, ClickHouse, PostgreSQL and this
//     process, sampled from /proc each second;
//   - latency: the same agents send 1,000 alerts a minute between them (Poisson
//     arrivals, uniformly over the agents); each alert is timed from its batch's send
//     to its arrival on the collector's live stream (/api/v1/alerts/stream);
//   - query: a store of -query-events events over -query-hosts hosts and -query-days
//     days (written through the store itself, so it holds exactly what ingest would),
//     then one host's alerts over the last 24 h through the collector's API
//     (PostgreSQL's index, then ClickHouse's payloads), and the same from ClickHouse
//     directly for reference.
//
// ClickHouse and PostgreSQL are private servers started from the Debian packages
// (internal/testservers), PostgreSQL syncing every commit unless -pg-durable=false.
// Needs `make build` (bin/tripwire-collector); a full run takes about 15 minutes.
//
// Usage: go run ./bench/fleet [-agents 100] [-duration 60s] [-batch 512] [-only throughput,latency,query]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	bin         string
	agents      int
	duration    time.Duration
	warmup      time.Duration
	batch       int
	window      uint64
	noticeEvery uint64
	alertsMin   int
	latencyDur  time.Duration
	queryEvents int
	queryHosts  int
	queryDays   int
	queryRuns   int
	pgDurable   bool
	profile     string
	keep        bool
	only        []string
}

func main() {
	var o options
	var only string
	flag.StringVar(&o.bin, "bin", "bin", "directory with tripwire-collector (make build)")
	flag.IntVar(&o.agents, "agents", 100, "simulated agents")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "throughput: measured run, after the warm-up")
	flag.DurationVar(&o.warmup, "warmup", 15*time.Second, "throughput: warm-up before measuring")
	flag.IntVar(&o.batch, "batch", 512, "entries per Arrow batch at most (the agent's default)")
	flag.Uint64Var(&o.window, "window", 8192, "entries sent and not yet acked, per agent (the agent's default)")
	flag.Uint64Var(&o.noticeEvery, "notice-every", 0, "throughput: every n-th entry is an agent notice, not an event (0: events only)")
	flag.IntVar(&o.alertsMin, "alerts-per-min", 1000, "latency: alerts per minute over all agents")
	flag.DurationVar(&o.latencyDur, "latency-duration", 60*time.Second, "latency: how long to send alerts")
	flag.IntVar(&o.queryEvents, "query-events", 10_000_000, "query: events in the store")
	flag.IntVar(&o.queryHosts, "query-hosts", 100, "query: hosts the events belong to")
	flag.IntVar(&o.queryDays, "query-days", 10, "query: days the events span, up to now")
	flag.IntVar(&o.queryRuns, "query-runs", 100, "query: timed calls per query")
	flag.BoolVar(&o.pgDurable, "pg-durable", true, "PostgreSQL syncs every commit (fsync, synchronous_commit, full_page_writes on)")
	flag.StringVar(&o.profile, "profile", "", "throughput: write a CPU profile of the collector over the measured run to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the servers running after the run, until interrupted, for inspection")
	flag.StringVar(&only, "only", "latency,throughput,query", "which measurements to run, comma-separated")
	flag.Parse()
	o.only = strings.Split(only, ",")
	for _, p := range o.only {
		if !slices.Contains([]string{"latency", "throughput", "query"}, p) {
			fmt.Fprintf(os.Stderr, "bench/fleet: -only: unknown measurement %q\n", p)
			os.Exit(2)
		}
	}
	if o.agents < 1 || o.batch < 1 || o.window < uint64(o.batch) || o.alertsMin < 1 {
		fmt.Fprintln(os.Stderr, "bench/fleet: need -agents ≥ 1, -batch ≥ 1, -window ≥ -batch, -alerts-per-min ≥ 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/fleet:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(bin, "tripwire-collector")); err != nil {
		return fmt.Errorf("%w: run `make build` first", err)
	}
	var pgSettings []string
	if o.pgDurable {
		pgSettings = []string{"fsync=on", "synchronous_commit=on", "full_page_writes=on"}
	}
	// Closer to a production server than the tests' 32 MB, still small for this VM.
	pgSettings = append(pgSettings, "shared_buffers=512MB")
	began := time.Now()
	s, err := newSite(bin, pgSettings)
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Printf("tripwire fleet benchmark: %s/%s, %d CPUs, ClickHouse 18.16 and PostgreSQL 15 (durable commits: %v), servers up in %v\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), o.pgDurable, time.Since(began).Round(time.Millisecond))

	var results []result
	has := func(p string) bool { return slices.Contains(o.only, p) }
	if has("latency") || has("throughput") {
		rs, err := ingest(ctx, s, o)
		results = append(results, rs...)
		if err != nil {
			printResults(results)
			return err
		}
	}
	if has("query") {
		rs, err := query(ctx, s, o)
		results = append(results, rs...)
		if err != nil {
			printResults(results)
			return err
		}
	}
	printResults(results)
	if o.keep {
		// For a look at the databases (EXPLAIN, system.parts) after a run.
		fmt.Printf("\nkeeping the servers until interrupted: PostgreSQL %s (databases %s, %s), ClickHouse %s; logs in %s\n",
			s.pg.DSN(), ingestDB, queryDB, s.ch.Addr(), s.dir)
		<-ctx.Done()
	}
	return nil
}

// result is one printed figure, against its goal where it has one.
type result struct {
	name, measured, goal string
	met                  *bool // nil: no goal
}

func printResults(rs []result) {
	if len(rs) == 0 {
		return
	}
	fmt.Println()
	w := 0
	for _, r := range rs {
		w = max(w, len([]rune(r.name)))
	}
	for _, r := range rs {
		verdict := ""
		if r.met != nil {
			verdict = "  → met"
			if !*r.met {
				verdict = "  → NOT met"
			}
		}
		goal := ""
		if r.goal != "" {
			goal = "  (goal " + r.goal + ")"
		}
		fmt.Printf("%-*s  %s%s%s\n", w, r.name, r.measured, goal, verdict)
	}
}

func ptr(b bool) *bool { return &b }

// errStopped is returned when the run is interrupted.
var errStopped = errors.New("interrupted")
