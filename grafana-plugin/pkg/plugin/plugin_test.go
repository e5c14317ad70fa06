package plugin_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/collectortest"
	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/plugin"
)

// p is the plugin, served over gRPC for the whole test binary.
var p *collectortest.Plugin

var update = flag.Bool("update", false, "rewrite the golden frame shapes in testdata")

func TestMain(m *testing.M) {
	cleanup, err := collectortest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var stop func() error
	if p, stop, err = collectortest.ServePlugin(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the plugin:", err)
		code = 1
	}
	cleanup()
	if code == 0 {
		// Every RunStream has returned and every connection is closed.
		if err := goleak.Find(goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// lastHour is the panel time range of the tests.
func lastHour() backend.TimeRange {
	now := time.Now()
	return backend.TimeRange{From: now.Add(-time.Hour), To: now.Add(time.Minute)}
}

func query(js string) backend.DataQuery {
	return backend.DataQuery{RefID: "A", JSON: []byte(js), TimeRange: lastHour(), Interval: time.Minute, MaxDataPoints: 1000}
}

// checkGolden compares the JSON of f with testdata/<name>.golden.json (-update rewrites
// it). The SDK's experimental golden helpers need testify, which go.mod does not list.
func checkGolden(t *testing.T, name string, f *data.Frame) {
	t.Helper()
	got, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	var g, w any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	json.Unmarshal(got, &g)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("frame %s differs from %s (run with -update if the change is meant):\n got: %s\nwant: %s", name, path, got, want)
	}
}

// shape is a frame without its rows (and without the executed query, which holds times):
// what the golden files pin.
func shape(f *data.Frame) *data.Frame {
	c := f.EmptyCopy()
	for i, fd := range f.Fields {
		c.Fields[i].Config = fd.Config
	}
	if f.Meta != nil {
		m := *f.Meta
		m.ExecutedQueryString = ""
		c.Meta = &m
	}
	return c
}

func oneFrame(t *testing.T, dr backend.DataResponse) *data.Frame {
	t.Helper()
	if dr.Error != nil {
		t.Fatalf("query failed: %v (status %d)", dr.Error, dr.Status)
	}
	if len(dr.Frames) != 1 {
		t.Fatalf("got %d frames, want 1", len(dr.Frames))
	}
	return dr.Frames[0]
}

// column returns the field named name, failing if there is none.
func column(t *testing.T, f *data.Frame, name string) *data.Field {
	t.Helper()
	fd, i := f.FieldByName(name)
	if i < 0 {
		t.Fatalf("frame %q has no field %q", f.Name, name)
	}
	return fd
}

// rowOfPID returns the row of an alerts frame whose pid is pid, or -1.
func rowOfPID(f *data.Frame, pid int) int {
	fd, i := f.FieldByName("pid")
	if i < 0 {
		return -1
	}
	for r := range fd.Len() {
		if p, ok := fd.At(r).(*int64); ok && p != nil && *p == int64(pid) {
			return r
		}
	}
	return -1
}

// One collector, one agent, one trip; every query type, health and resources through the
// plugin's gRPC protocol.
func TestAgainstRealCollector(t *testing.T) {
	collectortest.RequireRoot(t)
	env := collectortest.Start(t)
	ds := env.Settings(env.Token)
	// A rule global and for web-1 under one name, and another: the editors list each name once.
	env.PutRules(
		`{"name":"decoy","type":"file","severity":"CRITICAL","paths":["/srv/decoy"]}`,
		`{"name":"decoy","host":"web-1","type":"file","severity":"CRITICAL","paths":["/srv/decoy"]}`,
		`{"name":"ssh-keys","type":"file","severity":"WARN","paths":["/root/.ssh/id_ed25519"]}`,
	)
	pid := env.Trip()
	alert := env.WaitAlert(pid)

	t.Run("alerts", func(t *testing.T) {
		f := oneFrame(t, p.Query(t, ds, query(`{"refId":"A","queryType":"alerts","host":"web-1","tripwireType":"file","severity":"CRITICAL","limit":10,"datasource":{"uid":"tripwire"}}`)))
		r := rowOfPID(f, pid)
		if r < 0 {
			t.Fatalf("no row with pid %d in\n%s", pid, table(f))
		}
		want := map[string]any{
			"host": "web-1", "tripwire_type": "FILE", "rule_name": "decoy", "severity": "CRITICAL",
			"triage_status": "open", "user": "nobody", "exe": "/usr/bin/cat", "path": env.Decoy, "op": "read",
			"alert_id": alert.AlertID, "tags": "FILE,CRITICAL,decoy,web-1",
		}
		for name, v := range want {
			if got := column(t, f, name).At(r); got != v {
				t.Errorf("%s = %v, want %v", name, got, v)
			}
		}
		if got := column(t, f, "time").At(r).(time.Time); !got.Equal(alert.Timestamp) {
			t.Errorf("time = %v, want the alert's %v", got, alert.Timestamp)
		}
		if text := column(t, f, "text").At(r).(string); !strings.Contains(text, "read "+env.Decoy+" by nobody (pid") {
			t.Errorf("annotation text = %q", text)
		}
		if f.RefID != "A" || f.Meta.Channel != "" {
			t.Errorf("refId %q, channel %q; want A and no channel", f.RefID, f.Meta.Channel)
		}
		checkGolden(t, "alerts", shape(f))

		none := oneFrame(t, p.Query(t, ds, query(`{"queryType":"alerts","host":"no-such-host"}`)))
		if none.Rows() != 0 {
			t.Errorf("host filter: got %d rows for an unknown host", none.Rows())
		}
	})

	t.Run("alerts filtered by rule, status and text", func(t *testing.T) {
		for q, want := range map[string]bool{
			`{"queryType":"alerts","rule":"decoy","status":"open","text":"NOBODY"}`: true,
			`{"queryType":"alerts","rule":"other"}`:                                 false,
			`{"queryType":"alerts","status":"resolved"}`:                            false,
			`{"queryType":"alerts","text":"no-such-path-anywhere"}`:                 false,
		} {
			f := oneFrame(t, p.Query(t, ds, query(q)))
			if got := rowOfPID(f, pid) >= 0; got != want {
				t.Errorf("%s: found = %v, want %v", q, got, want)
			}
		}
	})

	t.Run("live alerts carry a channel", func(t *testing.T) {
		f := oneFrame(t, p.Query(t, ds, query(`{"queryType":"alerts","live":true}`)))
		if f.Meta.Channel != "ds/tripwire/alerts" {
			t.Errorf("channel = %q, want ds/tripwire/alerts", f.Meta.Channel)
		}
		f = oneFrame(t, p.Query(t, ds, query(`{"queryType":"alerts","live":true,"host":"web-1","rule":"decoy"}`)))
		if !regexp.MustCompile(`^ds/tripwire/alerts/[A-Za-z0-9_\-=/.]+$`).MatchString(f.Meta.Channel) {
			t.Errorf("channel = %q: not ds/tripwire/alerts/<filter> in Grafana's channel alphabet", f.Meta.Channel)
		}
	})

	t.Run("counts", func(t *testing.T) {
		f := oneFrame(t, p.Query(t, ds, query(`{"queryType":"counts","groupBy":"type"}`)))
		if f.TimeSeriesSchema().Type != data.TimeSeriesTypeWide {
			t.Fatalf("counts frame is not a wide time series:\n%s", table(f))
		}
		times := column(t, f, "time")
		if times.Len() != 61 && times.Len() != 62 {
			t.Errorf("%d buckets for an hour and a minute at 60 s, want 61 or 62", times.Len())
		}
		var file *data.Field
		for _, fd := range f.Fields[1:] {
			if fd.Labels["type"] == "FILE" {
				file = fd
			}
		}
		if file == nil {
			t.Fatalf("no field labelled type=FILE:\n%s", table(f))
		}
		if n := sum(file); n < 1 {
			t.Errorf("FILE alerts in the last hour = %d, want ≥ 1", n)
		}
		checkGolden(t, "counts", shape(f))

		all := oneFrame(t, p.Query(t, ds, query(`{"queryType":"counts"}`)))
		if n := sum(column(t, all, "alerts")); n < 1 {
			t.Errorf("ungrouped count = %d, want ≥ 1", n)
		}
	})

	t.Run("hosts", func(t *testing.T) {
		f := oneFrame(t, p.Query(t, ds, query(`{"queryType":"hosts"}`)))
		if f.Rows() != 1 || column(t, f, "text").At(0) != "web-1" {
			t.Fatalf("hosts:\n%s", table(f))
		}
		if seen := column(t, f, "last_seen").At(0).(time.Time); time.Since(seen) > time.Minute {
			t.Errorf("last_seen %v is not recent", seen)
		}
		checkGolden(t, "hosts", shape(f))
	})

	t.Run("audit", func(t *testing.T) {
		f := oneFrame(t, p.Query(t, ds, query(`{"queryType":"audit","host":"web-1","limit":1000}`)))
		kinds := column(t, f, "kind")
		hashes := column(t, f, "hash")
		events := 0
		for r := range f.Rows() {
			if kinds.At(r) == "event" {
				events++
			}
			if h := hashes.At(r).(string); len(h) != 64 {
				t.Errorf("row %d: hash %q is not SHA-256 hex", r, h)
			}
		}
		if events < 1 {
			t.Errorf("no event entry in the audit frame:\n%s", table(f))
		}
		checkGolden(t, "audit", shape(f))
	})

	t.Run("sql", func(t *testing.T) {
		f := oneFrame(t, p.Query(t, ds, query(`{"queryType":"sql","rawSql":"SELECT count(*) AS n, max(ts) AS last, $__interval_s AS step FROM entries WHERE kind = 'event' AND $__timeFilter(ts) AND ts >= $__timeFrom() AND ts < $__timeTo()"}`)))
		if f.Rows() != 1 {
			t.Fatalf("sql:\n%s", table(f))
		}
		if n, ok := f.Fields[0].At(0).(*int64); !ok || n == nil || *n < 1 {
			t.Errorf("n = %#v, want an int64 ≥ 1", f.Fields[0].At(0))
		}
		if last, ok := f.Fields[1].At(0).(*time.Time); !ok || last == nil || !last.Truncate(time.Microsecond).Equal(alert.Timestamp.Truncate(time.Microsecond)) {
			t.Errorf("last = %#v, want the alert's time %v", f.Fields[1].At(0), alert.Timestamp)
		}
		if step, ok := f.Fields[2].At(0).(*int64); !ok || step == nil || *step != 60 {
			t.Errorf("$__interval_s = %#v, want 60", f.Fields[2].At(0))
		}
		if !strings.Contains(f.Meta.ExecutedQueryString, "ts >= '") || strings.Contains(f.Meta.ExecutedQueryString, "$__") {
			t.Errorf("executed query %q: macros not expanded", f.Meta.ExecutedQueryString)
		}
		checkGolden(t, "sql", shape(f))

		dr := p.Query(t, ds, query(`{"queryType":"sql","rawSql":"DROP TABLE entries"}`))
		if dr.Error == nil || dr.Status != backend.StatusBadRequest || !strings.Contains(dr.Error.Error(), "rawSql") {
			t.Errorf("DROP TABLE: error %v, status %d; want a 400 naming rawSql", dr.Error, dr.Status)
		}
	})

	t.Run("variables", func(t *testing.T) {
		f := oneFrame(t, p.Query(t, ds, query(`{"queryType":"rules"}`)))
		if f.Fields[0].Name != "text" || f.Rows() != 2 || f.Fields[0].At(0) != "decoy" || f.Fields[0].At(1) != "ssh-keys" {
			t.Errorf("rules variable frame, want decoy and ssh-keys:\n%s", table(f))
		}
		f = oneFrame(t, p.Query(t, ds, query(`{"queryType":"hosts"}`)))
		if f.Fields[0].Name != "text" || !contains(f.Fields[0], "web-1") {
			t.Errorf("hosts variable frame:\n%s", table(f))
		}
	})

	t.Run("bad queries name the field", func(t *testing.T) {
		for q, field := range map[string]string{
			`{"queryType":"everything"}`:                            `"queryType"`,
			`{"queryType":"alerts","limit":"ten"}`:                  `"limit"`,
			`{"queryType":"alerts","limit":5000}`:                   `"limit"`,
			`{"queryType":"alerts","severity":"HIGH"}`:              `"severity"`,
			`{"queryType":"counts","groupBy":"user"}`:               `"groupBy"`,
			`{"queryType":"sql","rawSql":""}`:                       `"rawSql"`,
			`{"queryType":"sql","rawSql":"SELECT $__timeFilter()"}`: `"rawSql"`,
			`{"queryType":"sql","rawSql":"SELECT $__nope"}`:         `"rawSql"`,
			`{"queryType":"hosts","live":true}`:                     `"live"`,
			`not json`:                                              `not a JSON object`,
		} {
			dr := p.Query(t, ds, query(q))
			if dr.Error == nil || !strings.Contains(dr.Error.Error(), field) || dr.Status != backend.StatusBadRequest {
				t.Errorf("%s: error %v (status %d), want a 400 naming %s", q, dr.Error, dr.Status, field)
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		ctx := context.Background()
		check := func(s *backend.DataSourceInstanceSettings) *backend.CheckHealthResult {
			res, err := p.Client.CheckHealth(ctx, &backend.CheckHealthRequest{PluginContext: backend.PluginContext{PluginID: plugin.ID, DataSourceInstanceSettings: s}})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		if res := check(ds); res.Status != backend.HealthStatusOk || !strings.Contains(res.Message, "1 hosts") {
			t.Errorf("health = %v %q, want OK with 1 host", res.Status, res.Message)
		}
		bad := env.Settings("wrong-token")
		bad.UID = "bad-token"
		if res := check(bad); res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "401") || !strings.Contains(res.Message, "apiToken") {
			t.Errorf("bad token: health = %v %q, want an error naming 401 and apiToken", res.Status, res.Message)
		}
		down := env.Settings(env.Token)
		down.UID = "down"
		down.JSONData = []byte(fmt.Sprintf(`{"url":"http://%s"}`, collectortest.FreeAddr(t)))
		if res := check(down); res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "unreachable") {
			t.Errorf("nothing listening: health = %v %q, want unreachable", res.Status, res.Message)
		}
		// The collector behind a TLS proxy, as docs/grafana.md says to deploy it.
		target, _ := url.Parse(env.URL())
		proxy := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
		proxy.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
		proxy.StartTLS()
		defer proxy.Close()
		untrusted := env.Settings(env.Token)
		untrusted.UID = "tls-untrusted"
		untrusted.JSONData = []byte(fmt.Sprintf(`{"url":%q}`, proxy.URL))
		if res := check(untrusted); res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "TLS") || !strings.Contains(res.Message, "certificate") {
			t.Errorf("TLS proxy with an unknown CA: health = %v %q, want a TLS certificate error", res.Status, res.Message)
		}
		trusted := env.Settings(env.Token)
		trusted.UID = "tls-trusted"
		trusted.JSONData = []byte(fmt.Sprintf(`{"url":%q,"tlsAuthWithCACert":true}`, proxy.URL))
		trusted.DecryptedSecureJSONData["tlsCACert"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}))
		if res := check(trusted); res.Status != backend.HealthStatusOk {
			t.Errorf("TLS proxy with its CA configured: health = %v %q, want OK", res.Status, res.Message)
		}
		badCA := env.Settings(env.Token)
		badCA.UID = "tls-bad-ca"
		badCA.JSONData = []byte(fmt.Sprintf(`{"url":%q,"tlsAuthWithCACert":true}`, proxy.URL))
		badCA.DecryptedSecureJSONData["tlsCACert"] = "not PEM"
		if res := check(badCA); res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "secureJsonData.tlsCACert") {
			t.Errorf("unparsable CA: health = %v %q, want an error naming secureJsonData.tlsCACert", res.Status, res.Message)
		}
		empty := env.Settings("")
		empty.UID = "unset"
		empty.JSONData = []byte(`{}`)
		if res := check(empty); res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "jsonData.url") || !strings.Contains(res.Message, "secureJsonData.apiToken") {
			t.Errorf("no settings: health = %v %q, want both keys named", res.Status, res.Message)
		}
	})

	t.Run("resources", func(t *testing.T) {
		for path, want := range map[string]string{
			"hosts": `[{"text":"web-1","value":"web-1"}]`,
			"rules": `[{"text":"decoy","value":"decoy"},{"text":"ssh-keys","value":"ssh-keys"}]`,
		} {
			status, body := callResource(t, p, ds, path)
			if status != http.StatusOK || string(body) != want {
				t.Errorf("GET %s = %d %s, want 200 %s", path, status, body, want)
			}
		}
		if status, body := callResource(t, p, ds, "secrets"); status != http.StatusNotFound {
			t.Errorf("GET secrets: %d %s, want 404", status, body)
		}
	})

	t.Run("streams", func(t *testing.T) {
		ctx := context.Background()
		pctx := pluginContext(ds)
		for path, want := range map[string]pluginv2.SubscribeStreamResponse_Status{
			"alerts": pluginv2.SubscribeStreamResponse_OK,
			"alerts/" + b64(`{"host":"web-1","rule":"decoy"}`): pluginv2.SubscribeStreamResponse_OK,
			"metrics":                              pluginv2.SubscribeStreamResponse_NOT_FOUND,
			"alerts/not-base64!":                   pluginv2.SubscribeStreamResponse_NOT_FOUND,
			"alerts/" + b64(`{"severity":"HIGH"}`): pluginv2.SubscribeStreamResponse_NOT_FOUND,
			"alerts/" + b64(`{"secret":"x"}`):      pluginv2.SubscribeStreamResponse_NOT_FOUND,
		} {
			resp, err := p.Stream.SubscribeStream(ctx, &pluginv2.SubscribeStreamRequest{PluginContext: pctx, Path: path})
			if err != nil {
				t.Fatalf("SubscribeStream %s: %v", path, err)
			}
			if resp.Status != want {
				t.Errorf("SubscribeStream %s = %v, want %v", path, resp.Status, want)
			}
		}
		pub, err := p.Stream.PublishStream(ctx, &pluginv2.PublishStreamRequest{PluginContext: pctx, Path: "alerts", Data: []byte(`{}`)})
		if err != nil || pub.Status != pluginv2.PublishStreamResponse_PERMISSION_DENIED {
			t.Errorf("PublishStream = %v, %v; want PERMISSION_DENIED", pub, err)
		}
	})

	t.Run("RunStream", func(t *testing.T) {
		rs := runStream(t, p, ds, "alerts/"+b64(`{"host":"web-1","rule":"decoy","q":"nobody"}`))
		waitSubscribers(t, env, 1)
		start := time.Now()
		pid := env.Trip()
		got := rs.next(t, 2*time.Second)
		if r := rowOfPID(got, pid); r != 0 || got.Rows() != 1 {
			t.Fatalf("streamed frame is not the one row of pid %d:\n%s", pid, table(got))
		}
		t.Logf("trip → streamed row in %v", time.Since(start))
		if !sameFields(got, newAlertsShape(t, p, ds)) {
			t.Errorf("streamed frame fields differ from the alerts query's")
		}
		rs.cancel()
		rs.wait(t)
		waitSubscribers(t, env, 0)
	})
}

// Alerts keep streaming across a collector restart: those tripped while it was down and
// after it came back each arrive once.
func TestRunStreamSurvivesCollectorRestart(t *testing.T) {
	collectortest.RequireRoot(t)
	env := collectortest.Start(t)
	ds := env.Settings(env.Token)
	rs := runStream(t, p, ds, "alerts")
	waitSubscribers(t, env, 1)
	first := env.Trip()
	if r := rowOfPID(rs.next(t, 2*time.Second), first); r != 0 {
		t.Fatalf("first trip (pid %d) not streamed", first)
	}
	env.StopCollector()
	during := env.Trip()
	env.StartCollector()
	waitSubscribers(t, env, 1) // the plugin reconnected
	after := env.Trip()

	seen := map[int]int{}
	deadline := time.Now().Add(10 * time.Second)
	for (seen[during] == 0 || seen[after] == 0) && time.Now().Before(deadline) {
		f := rs.next(t, time.Until(deadline))
		seen[pidAt(f)]++
	}
	// Anything sent twice would arrive right behind.
	for f := rs.poll(500 * time.Millisecond); f != nil; f = rs.poll(500 * time.Millisecond) {
		seen[pidAt(f)]++
	}
	if seen[during] != 1 || seen[after] != 1 || seen[first] != 0 {
		t.Errorf("rows by pid after the restart = %v; want pid %d (tripped while down) and %d (after) once each, %d (before) not again", seen, during, after, first)
	}
	rs.cancel()
	rs.wait(t)
}

func pidAt(f *data.Frame) int {
	fd, i := f.FieldByName("pid")
	if i < 0 || f.Rows() != 1 {
		return -1
	}
	if p, ok := fd.At(0).(*int64); ok && p != nil {
		return int(*p)
	}
	return -1
}

// stream is a RunStream call as Grafana makes it, with its packets decoded as frames.
type stream struct {
	cancel context.CancelFunc
	frames chan *data.Frame
	done   chan error
}

func runStream(t *testing.T, p *collectortest.Plugin, ds *backend.DataSourceInstanceSettings, path string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := p.Stream.RunStream(ctx, &pluginv2.RunStreamRequest{PluginContext: pluginContext(ds), Path: path})
	if err != nil {
		cancel()
		t.Fatalf("RunStream %s: %v", path, err)
	}
	s := &stream{cancel: cancel, frames: make(chan *data.Frame, 100), done: make(chan error, 1)}
	t.Cleanup(cancel)
	go func() {
		for {
			pkt, err := c.Recv()
			if err != nil {
				close(s.frames)
				s.done <- err
				return
			}
			var f data.Frame
			if err := json.Unmarshal(pkt.Data, &f); err != nil {
				close(s.frames)
				s.done <- fmt.Errorf("packet is not a frame: %w: %s", err, pkt.Data)
				return
			}
			s.frames <- &f
		}
	}()
	return s
}

func (s *stream) next(t *testing.T, timeout time.Duration) *data.Frame {
	t.Helper()
	f := s.poll(timeout)
	if f == nil {
		t.Fatalf("no frame on the stream within %v", timeout)
	}
	return f
}

// poll returns the next frame, or nil after timeout or when the stream ended.
func (s *stream) poll(timeout time.Duration) *data.Frame {
	select {
	case f := <-s.frames:
		return f
	case <-time.After(timeout):
		return nil
	}
}

// wait checks that the stream ended with the caller's cancellation, nothing else.
func (s *stream) wait(t *testing.T) {
	t.Helper()
	for range s.frames {
	}
	select {
	case err := <-s.done:
		if status.Code(err) != codes.Canceled && !errors.Is(err, io.EOF) {
			t.Errorf("stream ended with %v, want its cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("stream did not end within 5 s of its cancellation")
	}
}

// waitSubscribers waits until the collector counts n live subscribers (the plugin's
// RunStream connections).
func waitSubscribers(t *testing.T, env *collectortest.Env, n int) {
	t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^tripwire_collector_live_subscribers %d$`, n))
	collectortest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d live subscribers on the collector", n), func() (bool, string) {
		resp, err := http.Get(env.URL() + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return re.Match(b), regexp.MustCompile(`(?m)^tripwire_collector_live_subscribers .*$`).FindString(string(b))
	})
}

func newAlertsShape(t *testing.T, p *collectortest.Plugin, ds *backend.DataSourceInstanceSettings) *data.Frame {
	return oneFrame(t, p.Query(t, ds, query(`{"queryType":"alerts","limit":1}`)))
}

func sameFields(a, b *data.Frame) bool {
	if len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if a.Fields[i].Name != b.Fields[i].Name || a.Fields[i].Type() != b.Fields[i].Type() {
			return false
		}
	}
	return true
}

func pluginContext(ds *backend.DataSourceInstanceSettings) *pluginv2.PluginContext {
	return backend.ToProto().PluginContext(backend.PluginContext{PluginID: plugin.ID, DataSourceInstanceSettings: ds})
}

func callResource(t *testing.T, p *collectortest.Plugin, ds *backend.DataSourceInstanceSettings, path string) (int, []byte) {
	t.Helper()
	var got *backend.CallResourceResponse
	err := p.Client.CallResource(context.Background(), &backend.CallResourceRequest{
		PluginContext: backend.PluginContext{PluginID: plugin.ID, DataSourceInstanceSettings: ds},
		Path:          path, Method: http.MethodGet, URL: path,
	}, backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error { got = r; return nil }))
	if err != nil || got == nil {
		t.Fatalf("CallResource %s: %v", path, err)
	}
	return got.Status, got.Body
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func sum(fd *data.Field) int64 {
	var n int64
	for i := range fd.Len() {
		if v, ok := fd.At(i).(int64); ok {
			n += v
		}
	}
	return n
}

func contains(fd *data.Field, s string) bool {
	for i := range fd.Len() {
		if fd.At(i) == s {
			return true
		}
	}
	return false
}

func table(f *data.Frame) string {
	s, err := f.StringTable(30, 20)
	if err != nil {
		return err.Error()
	}
	return s
}
