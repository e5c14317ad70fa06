// Command latency measures open() → visible in the collector's API: a file tripwire is
// read N times (a fresh open, read and close each time) and each alert is timed until it
// arrives on the API's live stream (/api/v1/alerts/stream). It runs the real binaries
// from bin/ (make build) and needs root for fanotify. Prints p50/p90/p99/max.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tripwire-project/tripwire/bench/internal/benchnet"
)

func main() {
	n := flag.Int("n", 1000, "reads to time")
	bin := flag.String("bin", "bin", "directory with tripwire and tripwire-collector")
	flag.Parse()
	if err := run(*n, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run(n int, bin string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (fanotify): run `sudo make bench`")
	}
	bin, _ = filepath.Abs(bin)
	dir, err := os.MkdirTemp("", "tripwire-bench-latency-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	grpcAddr, httpAddr, hz := benchnet.FreeAddr(), benchnet.FreeAddr(), benchnet.FreeAddr()
	token := "bench-token-0123456789"
	sh := func(name string, args ...string) error {
		out, err := exec.Command(filepath.Join(bin, name), args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
		}
		return nil
	}
	if err := sh("tripwire-collector", "pki", "init", "--dir", filepath.Join(dir, "pki")); err != nil {
		return err
	}
	if err := sh("tripwire-collector", "pki", "issue", "--dir", filepath.Join(dir, "pki"), "--host", "bench"); err != nil {
		return err
	}
	// One watched file per read: the agent folds repeated reads of one file by one
	// process into a summary (burst de-duplication), which is not what this measures.
	decoy := filepath.Join(dir, "decoys")
	if err := os.Mkdir(decoy, 0o755); err != nil {
		return err
	}
	for i := range n {
		os.WriteFile(filepath.Join(decoy, fmt.Sprintf("f%04d", i)), []byte("decoy\n"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "collector.yaml"), fmt.Appendf(nil,
		"listen: {grpc: %q, http: %q}\npki: {dir: pki}\nstorage: {duckdb: data/t.duckdb}\napi: {tokens: [%s]}\n", grpcAddr, httpAddr, token), 0o644)
	os.WriteFile(filepath.Join(dir, "config.yaml"), fmt.Appendf(nil, `host: bench
collector: {address: %q, ca: pki/bench/ca.crt, cert: pki/bench/agent.crt, key: pki/bench/agent.key, server_name: localhost}
audit: {dir: audit}
healthz: %q
rules:
  - {name: decoy, type: file, paths: [%s], severity: CRITICAL}
`, grpcAddr, hz, decoy), 0o644)

	coll := exec.Command(filepath.Join(bin, "tripwire-collector"), "serve", "--config", filepath.Join(dir, "collector.yaml"))
	if err := coll.Start(); err != nil {
		return err
	}
	defer func() { coll.Process.Signal(os.Interrupt); coll.Wait() }()
	if err := waitHTTP("http://" + httpAddr + "/healthz"); err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	// Start → monitoring: the agent puts its fanotify marks in place before it binds
	// /healthz, so the first answer from /healthz bounds the time to monitoring.
	var starts []time.Duration
	var agent *exec.Cmd
	for i := 0; i < 10; i++ {
		if agent != nil {
			agent.Process.Signal(os.Interrupt)
			agent.Wait()
		}
		agent = exec.Command(filepath.Join(bin, "tripwire"), "start", "--config", filepath.Join(dir, "config.yaml"))
		t0 := time.Now()
		if err := agent.Start(); err != nil {
			return err
		}
		if err := waitHTTP("http://" + hz + "/healthz"); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		starts = append(starts, time.Since(t0))
	}
	defer func() { agent.Process.Signal(os.Interrupt); agent.Wait() }()
	slices.Sort(starts)
	fmt.Printf("agent start → monitoring (exec until /healthz answers; marks are set before), 10 starts\n")
	fmt.Printf("  %-6s %12s\n  %-6s %12s   (requirement < 1s)\n", "median", starts[5].Round(time.Microsecond), "max", starts[9].Round(time.Microsecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/v1/alerts/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	arrivals := make(chan time.Time, n)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") {
				var a struct {
					RuleName string `json:"rule_name"`
				}
				if json.Unmarshal([]byte(line[6:]), &a) == nil && a.RuleName == "decoy" {
					arrivals <- time.Now()
				}
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the subscription is registered before the first read

	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := os.ReadFile(filepath.Join(decoy, fmt.Sprintf("f%04d", i))); err != nil {
			return err
		}
		select {
		case t1 := <-arrivals:
			lat = append(lat, t1.Sub(t0))
		case <-time.After(10 * time.Second):
			return fmt.Errorf("read %d: no alert within 10 s", i)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	fmt.Printf("open() → visible in the API (live stream), %d reads, fanotify → chain (fsync) → gRPC/mTLS → DuckDB → SSE\n", n)
	fmt.Printf("  %-6s %12s\n", "p50", pct(0.50).Round(time.Microsecond))
	fmt.Printf("  %-6s %12s\n", "p90", pct(0.90).Round(time.Microsecond))
	fmt.Printf("  %-6s %12s   (target < 1s; requirement 5s)\n", "p99", pct(0.99).Round(time.Microsecond))
	fmt.Printf("  %-6s %12s\n", "max", lat[len(lat)-1].Round(time.Microsecond))
	return nil
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within 30 s", url)
}
