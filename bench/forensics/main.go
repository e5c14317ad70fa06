// Command forensics measures tripwire-forensics (package forensics) on this machine and
// prints the figures:
//
//   - export rate: entries/s from an agent's segment directory of -entries entries
//     (1M by default, rotated at 64 MiB) to a SQL script and to NDJSON, with the peak Go
//     heap during the export (the export streams: it must not grow with the chain);
//   - DuckDB verification rate: the export's views (every hash recomputed with DuckDB's
//     sha256, every link, seq gap and order checked) over all the entries, loaded from
//     the NDJSON export;
//   - SQL script load rate: the SQL export executed statement by statement as the duckdb
//     shell does, over the first -script-entries entries (DuckDB parses each VALUES
//     row, far slower than read_json: measured on a prefix to keep the run short).
//
// Usage: go run ./bench/forensics [-entries 1000000] [-script-entries 100000] [-dir DIR]
//
// It writes about 2 GB under -dir (a temporary directory by default, removed at the
// end) and runs in about two minutes on a 2-core VM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/forensics"
	"github.com/tripwire-project/tripwire/proto/chain"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/forensics:", err)
		os.Exit(1)
	}
}

func run() error {
	entries := flag.Int("entries", 1_000_000, "chain entries to write, export and verify")
	scriptEntries := flag.Int("script-entries", 100_000, "entries of the SQL script load measure")
	dir := flag.String("dir", "", "working directory (default: a temporary directory, removed)")
	flag.Parse()
	if *entries < 1 || *scriptEntries < 1 {
		return errors.New("need -entries and -script-entries ≥ 1")
	}
	work := *dir
	if work == "" {
		tmp, err := os.MkdirTemp("", "tripwire-bench-forensics-")
		if err != nil {
			return fmt.Errorf("creating temporary directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		work = tmp
	}
	ctx := context.Background()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "measure\tfigure\n")

	chainDir := filepath.Join(work, "audit")
	start := time.Now()
	if err := writeChain(chainDir, *entries); err != nil {
		return err
	}
	fmt.Fprintf(tw, "chain written (agent/audit, reference)\t%d entries in %.1f s\n", *entries, time.Since(start).Seconds())

	src, err := forensics.NewDirSource(chainDir, "bench-01")
	if err != nil {
		return err
	}
	var sqlSum, ndSum forensics.Summary
	sqlPath, ndPath := filepath.Join(work, "export.sql"), filepath.Join(work, "export.ndjson")
	for _, f := range []struct {
		format forensics.Format
		path   string
		sum    *forensics.Summary
	}{{forensics.FormatSQL, sqlPath, &sqlSum}, {forensics.FormatNDJSON, ndPath, &ndSum}} {
		el, peak, err := timed(func() error {
			out, err := os.Create(f.path)
			if err != nil {
				return err
			}
			*f.sum, err = forensics.Export(ctx, src, out, forensics.Options{Format: f.format})
			return errors.Join(err, out.Close())
		})
		if err != nil {
			return fmt.Errorf("exporting %s: %w", f.format, err)
		}
		st, _ := os.Stat(f.path)
		fmt.Fprintf(tw, "export to %s\t%.0fk entries/s (%d in %.1f s, %d MiB, peak Go heap %d MiB)\n", f.format,
			float64(f.sum.Entries)/el.Seconds()/1e3, f.sum.Entries, el.Seconds(), st.Size()>>20, peak>>20)
	}

	db, err := forensics.OpenDuckDB(filepath.Join(work, "case.duckdb"))
	if err != nil {
		return err
	}
	defer db.Close()
	el, _, err := timed(func() error { return forensics.LoadExport(ctx, db, ndPath) })
	if err != nil {
		return fmt.Errorf("loading the NDJSON export: %w", err)
	}
	fmt.Fprintf(tw, "load NDJSON export into DuckDB (read_json)\t%.0fk entries/s (%.1f s)\n", float64(ndSum.Entries)/el.Seconds()/1e3, el.Seconds())
	var rep forensics.ExportReport
	el, _, err = timed(func() error { rep, err = forensics.VerifyLoaded(ctx, db); return err })
	if err != nil {
		return fmt.Errorf("verifying in DuckDB: %w", err)
	}
	fmt.Fprintf(tw, "DuckDB verification (views: sha256, links, gaps, order)\t%.0fk entries/s (%d entries, %d hashes, %.1f s)\n",
		float64(rep.Entries)/el.Seconds()/1e3, rep.Entries, rep.Hashed, el.Seconds())

	// The SQL script as the shell runs it, over a prefix of the chain.
	prefix := filepath.Join(work, "prefix.sql")
	out, err := os.Create(prefix)
	if err != nil {
		return err
	}
	psum, err := forensics.Export(ctx, &limitSource{Source: src, n: uint64(*scriptEntries)}, out, forensics.Options{})
	if err := errors.Join(err, out.Close()); err != nil {
		return fmt.Errorf("exporting the prefix: %w", err)
	}
	sdb, err := forensics.OpenDuckDB(filepath.Join(work, "script.duckdb"))
	if err != nil {
		return err
	}
	defer sdb.Close()
	el, _, err = timed(func() error { return forensics.LoadExport(ctx, sdb, prefix) })
	if err != nil {
		return fmt.Errorf("loading the SQL script: %w", err)
	}
	fmt.Fprintf(tw, "load SQL script statement by statement (as the duckdb shell)\t%.1fk entries/s (%d in %.1f s)\n",
		float64(psum.Entries)/el.Seconds()/1e3, psum.Entries, el.Seconds())
	return nil
}

// timed runs f and returns its duration and the peak Go heap sampled meanwhile.
func timed(f func() error) (time.Duration, uint64, error) {
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		var ms runtime.MemStats
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	err := f()
	el := time.Since(start)
	close(done)
	<-stopped
	return el, peak.Load(), err
}

// limitSource passes on the first n entries of each chain.
type limitSource struct {
	forensics.Source
	n uint64
}

var errLimit = errors.New("limit reached")

func (s *limitSource) Entries(ctx context.Context, host string, fn func(*forensics.Entry) error) error {
	var i uint64
	err := s.Source.Entries(ctx, host, func(e *forensics.Entry) error {
		if i++; i > s.n {
			return errLimit
		}
		return fn(e)
	})
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

// writeChain writes n realistic ~400-byte file events with the agent's writer.
func writeChain(dir string, n int) error {
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		return fmt.Errorf("opening the chain: %w", err)
	}
	uid := int64(1000)
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	batch := make([]chain.Payload, 0, 256)
	for i := 0; i < n; i++ {
		batch = append(batch, chain.Payload{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: chain.KindEvent,
			Event: &chain.Event{Type: chain.TypeFile, Rule: "aws-credentials-read", Severity: chain.SeverityCritical,
				Source: "fanotify", Path: "/home/deploy/.aws/credentials", Op: "read", Count: 1,
				PID: int32(4000 + i%1000), PPID: 1234, UID: &uid, User: "deploy", Exe: "/usr/bin/python3.11",
				Cmdline: fmt.Sprintf("python3 /opt/app/sync.py --profile prod --bucket backups-%d --region eu-west-1", i)}})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := l.Append(batch...); err != nil {
				return errors.Join(fmt.Errorf("appending: %w", err), l.Close())
			}
			batch = batch[:0]
		}
	}
	return l.Close()
}
