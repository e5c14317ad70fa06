// Package collectortest runs the real thing for the data source's tests and the
// dashboards' tests: the tripwire-collector and tripwire binaries built from this
// module, a PKI made by `pki init`/`pki issue`, a collector on the embedded DuckDB store,
// an agent with a file tripwire on a decoy file, and the plugin itself served over
// Grafana's plugin gRPC protocol. Nothing is mocked.
package collectortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/experimental/datasourcetest"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/plugin"
	"github.com/tripwire-project/tripwire/internal/testwait"
)

// binDir holds the binaries Build made.
var binDir string

// BinEnv names an environment variable: when set, Build uses the tripwire and
// tripwire-collector binaries in that directory (e.g. bin/ after make build) instead of
// building them.
const BinEnv = "TRIPWIRE_TEST_BIN"

// Build builds tripwire and tripwire-collector once for the test binary; call it from
// TestMain and run the returned cleanup after m.Run.
func Build() (cleanup func(), err error) {
	if dir := os.Getenv(BinEnv); dir != "" {
		binDir = dir
		return func() {}, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tripwire-grafana-bin-")
	if err != nil {
		return nil, err
	}
	for _, b := range []struct{ name, pkg, cgo string }{
		{"tripwire", "./agent/cmd/tripwire", "0"},
		{"tripwire-collector", "./collector/cmd/tripwire-collector", "1"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.name), b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("building %s: %v\n%s", b.name, err, out)
		}
	}
	binDir = dir
	return func() { os.RemoveAll(dir) }, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the tripwire module")
	}
	return filepath.Dir(gomod), nil
}

// RequireRoot skips outside CI, and fails in CI, when the test is not root: the agent's
// file tripwires need fanotify, and the decoy is read as user nobody.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (the agent's fanotify, reading the decoy as user nobody); CI runs as root")
	}
	t.Skip("needs root (skipped outside CI only): run the tests with sudo (the agent's fanotify, reading the decoy as user nobody)")
}

// Env is a collector and one agent (host "web-1") with the file tripwire "decoy"
// (CRITICAL) on Decoy.
type Env struct {
	t        testing.TB
	Dir      string
	GRPCAddr string
	HTTPAddr string
	Token    string
	Host     string
	Decoy    string
	coll     *proc
}

// Start starts a collector and an agent, both stopped when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	if binDir == "" {
		t.Fatal("collectortest.Build was not called from TestMain")
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // user nobody must reach the decoy
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &Env{t: t, Dir: dir, GRPCAddr: FreeAddr(t), HTTPAddr: FreeAddr(t), Token: "grafana-test-token-0123456789", Host: "web-1"}
	e.run("pki", "init", "--dir", filepath.Join(dir, "pki"))
	e.run("pki", "issue", "--dir", filepath.Join(dir, "pki"), "--host", e.Host)
	writeFile(t, filepath.Join(dir, "collector.yaml"), fmt.Sprintf(
		"listen: {grpc: %q, http: %q}\npki: {dir: pki}\nstorage: {duckdb: data/tripwire.duckdb}\napi: {tokens: [%s]}\n",
		e.GRPCAddr, e.HTTPAddr, e.Token))
	e.StartCollector()
	e.Decoy = filepath.Join(dir, "decoy")
	writeFile(t, e.Decoy, "aws_secret_access_key = decoy\n")
	healthz := FreeAddr(t)
	cfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf(`host: %s
collector: {address: %q, ca: pki/%s/ca.crt, cert: pki/%s/agent.crt, key: pki/%s/agent.key, server_name: localhost}
audit: {dir: audit, max_segment_mb: 1}
healthz: %q
rules:
  - {name: decoy, type: file, paths: [%s], severity: CRITICAL}
`, e.Host, e.GRPCAddr, e.Host, e.Host, e.Host, healthz, e.Decoy))
	agent := start(t, dir, "tripwire", "start", "--config", cfg)
	WaitFor(t, 15*time.Second, "agent /healthz", func() (bool, string) {
		if agent.exited() {
			t.Fatalf("agent exited:\n%s", agent.logText())
		}
		resp, err := http.Get("http://" + healthz + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return e
}

func (e *Env) run(args ...string) {
	e.t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "tripwire-collector"), args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("tripwire-collector %v: %v\n%s", args, err, out)
	}
}

// URL is the collector's API base URL.
func (e *Env) URL() string { return "http://" + e.HTTPAddr }

// StartCollector starts the collector (again, after StopCollector) and waits for its
// /healthz.
func (e *Env) StartCollector() {
	e.t.Helper()
	e.coll = start(e.t, e.Dir, "tripwire-collector", "serve", "--config", filepath.Join(e.Dir, "collector.yaml"))
	WaitFor(e.t, 30*time.Second, "collector /healthz", func() (bool, string) {
		if e.coll.exited() {
			e.t.Fatalf("collector exited:\n%s", e.coll.logText())
		}
		resp, err := http.Get(e.URL() + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// StopCollector stops the collector (SIGTERM) and waits for it to exit.
func (e *Env) StopCollector() { e.coll.stop() }

// Trip reads the decoy as user nobody and returns the reader's PID.
func (e *Env) Trip() int {
	e.t.Helper()
	cmd := exec.Command("cat", e.Decoy)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("cat %s as nobody: %v\n%s", e.Decoy, err, out)
	}
	return cmd.Process.Pid
}

// Alert is what the tests read of an alert from the collector's API.
type Alert struct {
	AlertID     string    `json:"alert_id"`
	Timestamp   time.Time `json:"timestamp"`
	EventDetail struct {
		PID int `json:"pid"`
	} `json:"event_detail"`
}

// WaitAlert waits until the collector's API holds the alert of a read by pid.
func (e *Env) WaitAlert(pid int) Alert {
	e.t.Helper()
	var got Alert
	WaitFor(e.t, 10*time.Second, fmt.Sprintf("the alert of pid %d in /api/v1/alerts", pid), func() (bool, string) {
		var body struct{ Alerts []Alert }
		if err := e.GetJSON("/api/v1/alerts?limit=1000", &body); err != nil {
			return false, err.Error()
		}
		for _, a := range body.Alerts {
			if a.EventDetail.PID == pid {
				got = a
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d alerts, none of pid %d", len(body.Alerts), pid)
	})
	return got
}

// PutRules replaces the collector's central rules (PUT /api/v1/rules) with the given
// rule objects.
func (e *Env) PutRules(rules ...string) {
	e.t.Helper()
	body := `{"rules": [` + strings.Join(rules, ",") + `]}`
	req, err := http.NewRequest(http.MethodPut, e.URL()+"/api/v1/rules", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		e.t.Fatalf("PUT /api/v1/rules: %s: %s", resp.Status, b.String())
	}
}

// GetJSON GETs a collector API path with the token and decodes the JSON answer.
func (e *Env) GetJSON(path string, out any) error {
	req, err := http.NewRequest(http.MethodGet, e.URL()+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+e.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b.String())
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Settings are the data source settings Grafana would pass for this collector, with
// the given token, as provisioned (uid "tripwire").
func (e *Env) Settings(token string) *backend.DataSourceInstanceSettings {
	return &backend.DataSourceInstanceSettings{
		UID:                     "tripwire",
		ID:                      1,
		Name:                    "Tripwire",
		Type:                    plugin.ID,
		JSONData:                []byte(fmt.Sprintf(`{"url": %q, "tlsSkipVerify": false, "tlsAuthWithCACert": false}`, e.URL())),
		DecryptedSecureJSONData: map[string]string{"apiToken": token},
		Updated:                 time.Now(),
	}
}

// Plugin is the data source served over the plugin gRPC protocol, as Grafana talks to
// it: Client for queries, health and resources, Stream for live channels.
type Plugin struct {
	Client *datasourcetest.TestPluginClient
	Stream pluginv2.StreamClient
}

// ServePlugin serves the data source on a free loopback port, for the whole test
// binary: call it once from TestMain (the SDK registers its metrics globally, so a
// second server in one process panics) and call stop after m.Run.
func ServePlugin() (p *Plugin, stop func() error, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	addr := l.Addr().String()
	l.Close()
	tp, err := datasourcetest.Manage(plugin.NewDatasource, datasourcetest.ManageOpts{Address: addr})
	if err != nil {
		return nil, nil, fmt.Errorf("serving the plugin: %w", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tp.Shutdown()
		return nil, nil, err
	}
	stop = func() error {
		conn.Close()
		return tp.Shutdown()
	}
	return &Plugin{Client: tp.Client, Stream: pluginv2.NewStreamClient(conn)}, stop, nil
}

// Query runs one query through QueryData and returns its response.
func (p *Plugin) Query(t testing.TB, settings *backend.DataSourceInstanceSettings, q backend.DataQuery) backend.DataResponse {
	t.Helper()
	if q.RefID == "" {
		q.RefID = "A"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := p.Client.QueryData(ctx, &backend.QueryDataRequest{
		PluginContext: backend.PluginContext{PluginID: plugin.ID, DataSourceInstanceSettings: settings},
		Queries:       []backend.DataQuery{q},
	})
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	dr, ok := resp.Responses[q.RefID]
	if !ok {
		t.Fatalf("QueryData: no response for refId %s", q.RefID)
	}
	return dr
}

// FreeAddr returns a loopback address nothing listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitFor polls cond until it holds or timeout passes; the failure names what was last
// seen.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Until(t, timeout, 20*time.Millisecond, what, cond)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// proc is a running binary whose output goes to a log file shown when the test fails.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t testing.TB, dir, name string, args ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(dir, name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, p.logText())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the exit, killing after 10 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}
