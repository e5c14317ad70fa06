package e2e

import (
	"bytes"
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

	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/internal/testwait"
)

// binDir holds the binaries built once for the whole package by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tripwire-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, b := range []struct{ name, pkg, cgo string }{
		{"tripwire", "./agent/cmd/tripwire", "0"},
		{"tripwire-collector", "./collector/cmd/tripwire-collector", "1"},
		{"tripwire-forensics", "./forensics/cmd/tripwire-forensics", "1"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.name), b.pkg)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.name, err, out)
			os.Exit(1)
		}
	}
	code := testservers.Run(m) // the fleet tests start PostgreSQL and ClickHouse
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot skips outside CI, and fails in CI, when the test cannot run as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (fanotify, running commands as user nobody); CI runs as root")
	}
	t.Skip("needs root (skipped outside CI only): run `sudo make test` (fanotify and running commands as user nobody)")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes; the failure names what was
// last seen.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Until(t, timeout, 20*time.Millisecond, what, cond)
}

// env is one collector and its PKI in a temp dir.
type env struct {
	t        *testing.T
	dir      string
	grpcAddr string
	httpAddr string
	token    string
	coll     *proc
}

// proc is a running binary whose stderr goes to a file shown on failure.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func start(t *testing.T, logDir, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, logDir, name, append([]string{filepath.Join(binDir, name)}, args...)...)
}

// startCmd starts an arbitrary command line as a proc whose output is logged.
func startCmd(t *testing.T, logDir, name string, argv ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(logDir, name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", argv, err)
	}
	p := &proc{name: name, cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("--- %s log ---\n%s", name, b)
		}
	})
	return p
}

// stop signals the process and waits for it to exit (SIGKILL after 10 s).
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
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

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // user nobody must reach decoys in here
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, dir: dir, grpcAddr: freeAddr(t), httpAddr: freeAddr(t), token: "e2e-token-0123456789"}
	if out, err := run(t, "tripwire-collector", "pki", "init", "--dir", filepath.Join(dir, "pki")); err != nil {
		t.Fatalf("pki init: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(dir, "collector.yaml"), fmt.Sprintf(
		"listen: {grpc: %q, http: %q}\npki: {dir: pki}\nstorage: {duckdb: data/tripwire.duckdb}\napi: {tokens: [%s]}\n",
		e.grpcAddr, e.httpAddr, e.token))
	return e
}

func (e *env) startCollector() {
	e.t.Helper()
	e.coll = e.serve(filepath.Join(e.dir, "collector.yaml"), &e.grpcAddr, &e.httpAddr)
}

// serve starts a collector on cfg and waits for its /healthz. freeAddr can only name a
// port that was free a moment ago: should another test process have taken one since,
// the collector moves to fresh ports (cfg is rewritten, the addresses updated), up to
// three times.
func (e *env) serve(cfg string, grpcAddr, httpAddr *string) *proc {
	e.t.Helper()
	for attempt := 1; ; attempt++ {
		p := start(e.t, e.dir, "tripwire-collector", "serve", "--config", cfg)
		var exitLog string
		waitFor(e.t, 30*time.Second, "collector /healthz", func() (bool, string) {
			if p.exited() {
				b, _ := os.ReadFile(p.log)
				exitLog = string(b)
				return true, ""
			}
			resp, err := http.Get("http://" + *httpAddr + "/healthz")
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == 200, resp.Status
		})
		switch {
		case exitLog == "":
			return p
		case attempt < 3 && strings.Contains(exitLog, "address already in use"):
			text, err := os.ReadFile(cfg)
			if err != nil {
				e.t.Fatal(err)
			}
			g, h := freeAddr(e.t), freeAddr(e.t)
			writeFile(e.t, cfg, strings.NewReplacer(*grpcAddr, g, *httpAddr, h).Replace(string(text)))
			*grpcAddr, *httpAddr = g, h
		default:
			e.t.Fatalf("collector exited:\n%s", exitLog)
		}
	}
}

// agentConfig issues a certificate for host and writes an agent config with rules (YAML
// flow mappings, one per line). It returns the config path and the healthz address.
func (e *env) agentConfig(host string, rules ...string) (cfgPath, healthz string) {
	e.t.Helper()
	return e.agentConfigWith(host, "", rules...)
}

// agentConfigWith is agentConfig with extra top-level YAML (watcher modes, redaction).
func (e *env) agentConfigWith(host, extra string, rules ...string) (cfgPath, healthz string) {
	e.t.Helper()
	if out, err := run(e.t, "tripwire-collector", "pki", "issue", "--dir", filepath.Join(e.dir, "pki"), "--host", host); err != nil {
		e.t.Fatalf("pki issue: %v\n%s", err, out)
	}
	healthz = freeAddr(e.t)
	cfgPath = filepath.Join(e.dir, host+".yaml")
	writeFile(e.t, cfgPath, fmt.Sprintf(`host: %s
collector: {address: %q, ca: pki/%s/ca.crt, cert: pki/%s/agent.crt, key: pki/%s/agent.key, server_name: localhost}
audit: {dir: audit-%s, max_segment_mb: 1}
healthz: %q
%s
rules:
  - %s
`, host, e.grpcAddr, host, host, host, host, healthz, extra, strings.Join(rules, "\n  - ")))
	return cfgPath, healthz
}

// decoyAgentConfig makes a world-readable decoy file and an agent config for host with
// one file rule "decoy" of the given severity on it.
func (e *env) decoyAgentConfig(host, severity string) (decoy, cfgPath, healthz string) {
	e.t.Helper()
	decoy = filepath.Join(e.dir, "decoy")
	writeFile(e.t, decoy, "x\n")
	cfgPath, healthz = e.agentConfig(host, fmt.Sprintf("{name: decoy, type: file, paths: [%s], severity: %s}", decoy, severity))
	return decoy, cfgPath, healthz
}

func (e *env) startAgent(cfgPath, healthz string) *proc {
	e.t.Helper()
	p := start(e.t, e.dir, "tripwire", "start", "--config", cfgPath)
	waitFor(e.t, 10*time.Second, "agent /healthz", func() (bool, string) {
		if p.exited() {
			b, _ := os.ReadFile(p.log)
			e.t.Fatalf("agent exited:\n%s", b)
		}
		var h healthzReport
		if err := getJSON("http://"+healthz+"/healthz", "", &h); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return p
}

type healthzReport struct {
	Status     string `json:"status"`
	UptimeS    int64  `json:"uptime_s"`
	QueueDepth uint64 `json:"queue_depth"`
	HeadSeq    uint64 `json:"head_seq"`
	AckedSeq   uint64 `json:"acked_seq"`
	LastAlert  *time.Time
	AuditBytes int64 `json:"audit_bytes"`
	Watchers   []struct {
		Name, Mode, Degraded string
	} `json:"watchers"`
}

type alert struct {
	AlertID      string    `json:"alert_id"`
	Host         string    `json:"host"`
	HostID       string    `json:"host_id"`
	Seq          uint64    `json:"seq"`
	Timestamp    time.Time `json:"timestamp"`
	TripwireType string    `json:"tripwire_type"`
	RuleName     string    `json:"rule_name"`
	Severity     string    `json:"severity"`
	EventDetail  struct {
		Path    string   `json:"path"`
		Op      string   `json:"op"`
		PID     int      `json:"pid"`
		UID     *int     `json:"uid"`
		User    string   `json:"user"`
		Exe     string   `json:"exe"`
		Cmdline string   `json:"cmdline"`
		Source  string   `json:"source"`
		Missing []string `json:"missing"`

		PPID             int    `json:"ppid"`
		Comm             string `json:"comm"`
		ParentExe        string `json:"parent_exe"`
		ExeSHA256        string `json:"exe_sha256"`
		CmdlineTruncated bool   `json:"cmdline_truncated"`
		Redacted         bool   `json:"redacted"`

		Protocol   string `json:"protocol"`
		Direction  string `json:"direction"`
		Mode       string `json:"mode"`
		SrcIP      string `json:"src_ip"`
		SrcPort    int    `json:"src_port"`
		DstIP      string `json:"dst_ip"`
		DstPort    int    `json:"dst_port"`
		FirstBytes string `json:"first_bytes"`

		Kind    string `json:"kind"` // of a host event (tripwire type HOST)
		Message string `json:"message"`
	} `json:"event_detail"`
}

// waitAlert waits up to timeout for an alert matching query and match, and returns it.
func (e *env) waitAlert(timeout time.Duration, query string, match func(alert) bool) alert {
	e.t.Helper()
	var got alert
	waitFor(e.t, timeout, "an alert matching "+query, func() (bool, string) {
		alerts, err := e.alerts(query)
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if match(a) {
				got = a
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d alerts, none matching: %+v", len(alerts), alerts)
	})
	return got
}

// alerts lists the alerts query selects. Unless query names a type, it keeps the
// tripwires' alerts only: the collector's own about hosts (type HOST: a DEGRADED watcher
// in a forced fallback mode, an OFFLINE host during an outage) are not what the tests
// count.
func (e *env) alerts(query string) ([]alert, error) {
	return listAlerts(e, query, func(a alert) string { return a.TripwireType })
}

// listAlerts decodes the alerts of /api/v1/alerts?query into A, leaving out those of
// type HOST (by typeOf) unless the query names a type.
func listAlerts[A any](e *env, query string, typeOf func(A) string) ([]A, error) {
	var body struct {
		Alerts []A `json:"alerts"`
	}
	err := getJSON("http://"+e.httpAddr+"/api/v1/alerts?"+query, e.token, &body)
	if strings.Contains("&"+query, "&type=") {
		return body.Alerts, err
	}
	var out []A
	for _, a := range body.Alerts {
		if typeOf(a) != "HOST" {
			out = append(out, a)
		}
	}
	return out, err
}

func getJSON(url, token string, out any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b.String())
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// asNobody runs a command as user nobody and returns its PID.
func asNobody(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v as nobody: %v\n%s", name, args, err, out)
	}
	return cmd.Process.Pid
}
