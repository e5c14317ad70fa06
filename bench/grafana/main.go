// Command grafana measures the Grafana data source against the real binaries from bin/
// (make build), the plugin served over Grafana's plugin gRPC protocol in this process:
//
//   - live: a file tripwire is read N times, each by a new cat process; each read is
//     timed from just before the cat is started until its row arrives on a RunStream subscriber (agent → collector → SSE → plugin
//     → gRPC stream), printing p50/p90/p99/max;
//   - counts: 1,000,000 events spread over 24 h are loaded into an embedded DuckDB store
//     through the storage API, a collector serves that file, and QueryData for a 24 h
//     counts panel (60 s buckets) is timed, ungrouped and grouped by type and by host.
//
// Needs root (fanotify).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"

	"github.com/tripwire-project/tripwire/bench/internal/benchnet"
	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/collectortest"
	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/plugin"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

func main() {
	n := flag.Int("n", 500, "reads to time on the live stream")
	events := flag.Int("events", 1_000_000, "events to load for the counts panel")
	runs := flag.Int("runs", 20, "QueryData calls to time per counts query")
	bin := flag.String("bin", "bin", "directory with tripwire and tripwire-collector")
	flag.Parse()
	if err := run(*n, *events, *runs, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "grafana:", err)
		os.Exit(1)
	}
}

const token = "bench-token-0123456789"

func run(n, events, runs int, bin string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (fanotify): run `sudo make bench`")
	}
	bin, _ = filepath.Abs(bin)
	p, stop, err := collectortest.ServePlugin()
	if err != nil {
		return err
	}
	defer stop()
	if err := live(p, bin, n); err != nil {
		return fmt.Errorf("live: %w", err)
	}
	if err := counts(p, bin, events, runs); err != nil {
		return fmt.Errorf("counts: %w", err)
	}
	return nil
}

// site is a temp dir with a PKI and a collector config.
type site struct {
	dir, grpcAddr, httpAddr, bin string
	procs                        []*exec.Cmd
}

func newSite(bin, name, dbPath string) (*site, error) {
	dir, err := os.MkdirTemp("", "tripwire-bench-grafana-"+name+"-")
	if err != nil {
		return nil, err
	}
	s := &site{dir: dir, grpcAddr: benchnet.FreeAddr(), httpAddr: benchnet.FreeAddr(), bin: bin}
	if dbPath == "" {
		dbPath = "data/t.duckdb"
	}
	if err := s.sh("tripwire-collector", "pki", "init", "--dir", filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	return s, os.WriteFile(filepath.Join(dir, "collector.yaml"), fmt.Appendf(nil,
		"listen: {grpc: %q, http: %q}\npki: {dir: pki}\nstorage: {duckdb: %s}\napi: {tokens: [%s]}\n", s.grpcAddr, s.httpAddr, dbPath, token), 0o644)
}

func (s *site) sh(name string, args ...string) error {
	out, err := exec.Command(filepath.Join(s.bin, name), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
	}
	return nil
}

func (s *site) start(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	logf, err := os.Create(filepath.Join(s.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	s.procs = append(s.procs, cmd)
	return nil
}

// close stops the processes newest first and removes the dir.
func (s *site) close() {
	for _, c := range slices.Backward(s.procs) {
		c.Process.Signal(os.Interrupt)
		c.Wait()
	}
	os.RemoveAll(s.dir)
}

func (s *site) startCollector() error {
	if err := s.start("tripwire-collector", "serve", "--config", filepath.Join(s.dir, "collector.yaml")); err != nil {
		return err
	}
	if err := benchnet.WaitHTTP("http://"+s.httpAddr+"/healthz", 60*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "tripwire-collector.log"))
		return fmt.Errorf("%w; collector log:\n%s", err, log)
	}
	return nil
}

func (s *site) settings() *backend.DataSourceInstanceSettings {
	return &backend.DataSourceInstanceSettings{
		UID: "tripwire", Name: "Tripwire", Type: plugin.ID, Updated: time.Now(),
		JSONData:                fmt.Appendf(nil, `{"url":"http://%s"}`, s.httpAddr),
		DecryptedSecureJSONData: map[string]string{"apiToken": token},
	}
}

func live(p *collectortest.Plugin, bin string, n int) error {
	s, err := newSite(bin, "live", "")
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.sh("tripwire-collector", "pki", "issue", "--dir", filepath.Join(s.dir, "pki"), "--host", "bench"); err != nil {
		return err
	}
	decoy := filepath.Join(s.dir, "decoy")
	os.WriteFile(decoy, []byte("decoy\n"), 0o644)
	hz := benchnet.FreeAddr()
	os.WriteFile(filepath.Join(s.dir, "config.yaml"), fmt.Appendf(nil, `host: bench
collector: {address: %q, ca: pki/bench/ca.crt, cert: pki/bench/agent.crt, key: pki/bench/agent.key, server_name: localhost}
audit: {dir: audit}
healthz: %q
rules:
  - {name: decoy, type: file, paths: [%s], severity: CRITICAL}
`, s.grpcAddr, hz, decoy), 0o644)
	if err := s.startCollector(); err != nil {
		return err
	}
	if err := s.start("tripwire", "start", "--config", filepath.Join(s.dir, "config.yaml")); err != nil {
		return err
	}
	if err := benchnet.WaitHTTP("http://"+hz+"/healthz", 30*time.Second); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pctx := backend.ToProto().PluginContext(backend.PluginContext{PluginID: plugin.ID, DataSourceInstanceSettings: s.settings()})
	stream, err := p.Stream.RunStream(ctx, &pluginv2.RunStreamRequest{PluginContext: pctx, Path: "alerts"})
	if err != nil {
		return err
	}
	rows := make(chan time.Time, 16)
	go func() {
		defer close(rows)
		for {
			pkt, err := stream.Recv()
			if err != nil {
				return
			}
			var f data.Frame
			if json.Unmarshal(pkt.Data, &f) == nil && f.Rows() == 1 {
				rows <- time.Now()
			}
		}
	}()
	// Each read is a new process (cat): the agent reports one process's repeated reads
	// of a file as a burst, so reads of one PID would not each make an alert.
	direct, err := followSSE(ctx, "http://"+s.httpAddr+"/api/v1/alerts/stream")
	if err != nil {
		return err
	}
	read := func() (time.Time, error) {
		t0 := time.Now()
		return t0, exec.Command("cat", decoy).Run()
	}
	// Warm up until the subscription is live on the collector.
	for warm := false; !warm; {
		if _, err := read(); err != nil {
			return err
		}
		select {
		case <-rows:
			warm = true
		case <-time.After(time.Second):
		}
	}
	drain(rows)
	drain(direct)
	lat := make([]time.Duration, 0, n)
	sse := make([]time.Duration, 0, n)
	for range n {
		t0, err := read()
		if err != nil {
			return err
		}
		for _, c := range []struct {
			rows chan time.Time
			lat  *[]time.Duration
		}{{rows, &lat}, {direct, &sse}} {
			select {
			case t := <-c.rows:
				*c.lat = append(*c.lat, t.Sub(t0))
			case <-time.After(5 * time.Second):
				return fmt.Errorf("a read was not streamed within 5 s (after %d rows)", len(lat))
			}
		}
		drain(rows)
		drain(direct)
	}
	fmt.Printf("cat decoy → row on a RunStream subscriber, %d reads: %s\n", n, percentiles(lat))
	fmt.Printf("cat decoy → event on the collector's SSE stream (same reads, for reference): %s\n", percentiles(sse))
	return nil
}

// followSSE sends the arrival time of each alert event on the collector's stream.
func followSSE(ctx context.Context, url string) (chan time.Time, error) {
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
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	c := make(chan time.Time, 16)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() == "event: alert" {
				c <- time.Now()
			}
		}
	}()
	return c, nil
}

func drain(c chan time.Time) {
	for {
		select {
		case <-c:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

func counts(p *collectortest.Plugin, bin string, events, runs int) error {
	s, err := newSite(bin, "counts", "data/t.duckdb")
	if err != nil {
		return err
	}
	defer s.close()
	os.MkdirAll(filepath.Join(s.dir, "data"), 0o755)
	to := time.Now().UTC()
	took, err := load(filepath.Join(s.dir, "data", "t.duckdb"), events, to.Add(-24*time.Hour), to)
	if err != nil {
		return err
	}
	fmt.Printf("loaded %d events over 24 h through the storage API in %v (%.0f events/s)\n", events, took.Round(time.Millisecond), float64(events)/took.Seconds())
	if err := s.startCollector(); err != nil {
		return err
	}
	ds := s.settings()
	for _, groupBy := range []string{"", "type", "host"} {
		var lat []time.Duration
		var total int64
		for range runs {
			t0 := time.Now()
			resp, err := p.Client.QueryData(context.Background(), &backend.QueryDataRequest{
				PluginContext: backend.PluginContext{PluginID: plugin.ID, DataSourceInstanceSettings: ds},
				Queries: []backend.DataQuery{{
					RefID: "A", JSON: fmt.Appendf(nil, `{"queryType":"counts","groupBy":%q}`, groupBy),
					TimeRange: backend.TimeRange{From: to.Add(-24 * time.Hour), To: to}, Interval: time.Minute, MaxDataPoints: 1440,
				}},
			})
			if err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
			dr := resp.Responses["A"]
			if dr.Error != nil {
				return dr.Error
			}
			total = sumCounts(dr.Frames[0])
		}
		fmt.Printf("QueryData, 24 h counts panel at 60 s, group by %-4q (%d alerts counted), %d calls: %s\n", groupBy, total, runs, percentiles(lat))
	}
	return nil
}

// load appends events FILE/NETWORK/PROCESS events of two hosts, evenly over [from, to),
// to a new store at path.
func load(path string, events int, from, to time.Time) (time.Duration, error) {
	st, err := duckdb.Open(path, slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	ctx := context.Background()
	hosts := []string{"bench-a", "bench-b"}
	chains := map[string]*storetest.Chain{}
	for _, h := range hosts {
		chains[h] = storetest.NewChain()
		if err := st.RegisterHost(ctx, storage.Host{HostID: h, Hostname: h, OS: "linux", Arch: "amd64", Kernel: "6.18", AgentVersion: "bench", ProtocolVersion: 1, Watchers: "[]", FirstSeen: from, LastSeen: to}); err != nil {
			return 0, err
		}
	}
	types := []string{chain.TypeFile, chain.TypeNetwork, chain.TypeProcess}
	sevs := []string{chain.SeverityInfo, chain.SeverityWarn, chain.SeverityCritical}
	step := to.Sub(from) / time.Duration(events)
	uid := int64(1000)
	const per = 5000
	start := time.Now()
	for i := 0; i < events; {
		h := hosts[(i/per)%len(hosts)]
		es := make([]batch.Entry, 0, per)
		for ; len(es) < per && i < events; i++ {
			es = append(es, chains[h].Event(from.Add(time.Duration(i)*step), chain.Event{
				Type: types[i%3], Rule: fmt.Sprintf("rule-%d", i%7), Severity: sevs[i%3], Source: "fanotify",
				Path: "/etc/passwd", Op: "read", Count: 1, PID: int32(1000 + i%30000), PPID: 1, UID: &uid,
				User: "deploy", Exe: "/usr/bin/cat", Cmdline: "cat /etc/passwd",
			}))
		}
		if err := st.AppendEntries(ctx, h, es); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func sumCounts(f *data.Frame) int64 {
	var n int64
	for _, fd := range f.Fields[1:] {
		for i := range fd.Len() {
			if v, ok := fd.At(i).(int64); ok {
				n += v
			}
		}
	}
	return n
}

func percentiles(d []time.Duration) string {
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return fmt.Sprintf("p50 %v, p90 %v, p99 %v, max %v",
		at(0.50).Round(10*time.Microsecond), at(0.90).Round(10*time.Microsecond), at(0.99).Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
}
