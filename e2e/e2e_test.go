package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A user (nobody) reads a watched file; the alert reaches the API with that reader's PID
// and user, through fanotify, the chain, Arrow over gRPC mTLS and the embedded store.
func TestFileReadByNobodyReachesAPI(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy := filepath.Join(e.dir, "decoy-credentials")
	writeFile(t, decoy, "aws_secret_access_key = decoy\n")
	cfg, hz := e.agentConfig("web-01", fmt.Sprintf("{name: decoy-creds, type: file, paths: [%s], severity: CRITICAL}", decoy))
	e.startAgent(cfg, hz)

	pid := asNobody(t, "cat", decoy)
	var got alert
	waitFor(t, 5*time.Second, "the alert in /api/v1/alerts", func() (bool, string) {
		alerts, err := e.alerts("type=FILE&host=web-01")
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if a.EventDetail.PID == pid {
				got = a
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d alerts, none with pid %d: %+v", len(alerts), pid, alerts)
	})
	d := got.EventDetail
	if d.User != "nobody" || d.UID == nil || *d.UID != 65534 || d.Path != decoy || d.Op != "read" {
		t.Errorf("alert detail = %+v; want read of %s by nobody (uid 65534)", d, decoy)
	}
	if d.Exe != "/usr/bin/cat" || d.Cmdline != "cat "+decoy || d.Source != "fanotify" {
		t.Errorf("alert detail = %+v; want exe /usr/bin/cat, cmdline %q, source fanotify", d, "cat "+decoy)
	}
	if got.Host != "web-01" || got.HostID == "" || got.RuleName != "decoy-creds" || got.Severity != "CRITICAL" || got.TripwireType != "FILE" || got.AlertID == "" {
		t.Errorf("alert = %+v", got)
	}
	if time.Since(got.Timestamp) > time.Minute || got.Timestamp.Location() != time.UTC {
		t.Errorf("timestamp %v is not a recent UTC time", got.Timestamp)
	}
	// The collector's /metrics counts the stream and the stored batches.
	resp, err := http.Get("http://" + e.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, re := range []string{`(?m)^tripwire_collector_agent_streams 1$`, `(?m)^tripwire_collector_ingest_batches_total [1-9]`, `(?m)^tripwire_collector_store_append_duration_seconds_count [1-9]`} {
		if !regexp.MustCompile(re).Match(metrics) {
			t.Errorf("/metrics does not match %s", re)
		}
	}
	// The same alert is found by every filter that should match it, and not by others.
	for q, want := range map[string]bool{
		"severity=CRITICAL": true, "severity=INFO": false, "type=PROCESS": false,
		"host=" + got.HostID: true, "host=other": false,
		"from=" + got.Timestamp.Add(-time.Second).Format(time.RFC3339Nano): true,
		"to=" + got.Timestamp.Add(-time.Second).Format(time.RFC3339Nano):   false,
	} {
		alerts, err := e.alerts(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		found := false
		for _, a := range alerts {
			found = found || a.AlertID == got.AlertID
		}
		if found != want {
			t.Errorf("query %q: found=%v, want %v", q, found, want)
		}
	}
}

// The collector is killed, 200 events happen, the collector restarts on the same store:
// all 200 arrive, each exactly once.
func TestCollectorOutageLosesNothing(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("web-02", "WARN")
	e.startAgent(cfg, hz)
	waitFor(t, 5*time.Second, "agent connected", func() (bool, string) {
		var h struct {
			Collector struct{ Connected bool } `json:"collector"`
		}
		err := getJSON("http://"+hz+"/healthz", "", &h)
		return err == nil && h.Collector.Connected, fmt.Sprint(err)
	})

	e.coll.stop(syscall.SIGKILL)
	const n = 200
	// 200 separate processes each read the decoy once: 200 events.
	script := fmt.Sprintf("for i in $(seq %d); do cat %s >/dev/null; done", n, decoy)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	waitFor(t, 10*time.Second, "200 events in the agent's chain, unacked", func() (bool, string) {
		var h healthzReport
		if err := getJSON("http://"+hz+"/healthz", "", &h); err != nil {
			return false, err.Error()
		}
		return h.QueueDepth >= n, fmt.Sprintf("%+v", h)
	})

	e.startCollector()
	var alerts []alert
	waitFor(t, 15*time.Second, "200 alerts after the restart", func() (bool, string) {
		var err error
		alerts, err = e.alerts("host=web-02&limit=1000")
		if err != nil {
			return false, err.Error()
		}
		return len(alerts) >= n, fmt.Sprintf("%d alerts", len(alerts))
	})
	// Let any resend settle, then count again: exactly n, no duplicates.
	waitFor(t, 10*time.Second, "the agent's queue to drain", func() (bool, string) {
		var h healthzReport
		err := getJSON("http://"+hz+"/healthz", "", &h)
		return err == nil && h.QueueDepth == 0, fmt.Sprintf("%+v %v", h, err)
	})
	alerts, err := e.alerts("host=web-02&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	seqs, pids := map[uint64]bool{}, map[int]bool{}
	for _, a := range alerts {
		if seqs[a.Seq] {
			t.Errorf("seq %d stored twice", a.Seq)
		}
		seqs[a.Seq] = true
		pids[a.EventDetail.PID] = true
	}
	if len(alerts) != n || len(pids) != n {
		t.Fatalf("got %d alerts from %d distinct pids, want exactly %d of each", len(alerts), len(pids), n)
	}
}

// A flipped byte in a segment is named by `tripwire audit verify`; a torn tail is
// repaired at start and the repair is itself in the chain.
func TestAuditChainTamperAndTornTail(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("web-03", "INFO")
	agent := e.startAgent(cfg, hz)
	for range 5 {
		asNobody(t, "cat", decoy)
	}
	waitFor(t, 5*time.Second, "5 events shipped", func() (bool, string) {
		alerts, err := e.alerts("host=web-03")
		return err == nil && len(alerts) == 5, fmt.Sprintf("%d %v", len(alerts), err)
	})
	agent.stop(syscall.SIGTERM)
	auditDir := filepath.Join(e.dir, "audit-web-03")
	if out, err := run(t, "tripwire", "audit", "verify", "--dir", auditDir); err != nil {
		t.Fatalf("verify of an intact chain failed: %v\n%s", err, out)
	}
	segs, _ := filepath.Glob(filepath.Join(auditDir, "seg-*.log"))
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	seg := segs[0]
	orig, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}

	// Torn tail: half of a line, as a crash mid-write leaves it.
	lines := strings.SplitAfter(string(orig), "\n")
	torn := string(orig) + lines[2][:len(lines[2])/2]
	writeFile(t, seg, torn)
	agent = e.startAgent(cfg, hz)
	waitFor(t, 5*time.Second, "the truncation record at the collector", func() (bool, string) {
		var body struct {
			Entries []struct {
				Seq     uint64 `json:"seq"`
				Kind    string `json:"kind"`
				Payload string `json:"payload"`
			} `json:"entries"`
		}
		if err := getJSON("http://"+e.httpAddr+"/api/v1/audit?host=web-03&limit=1000", e.token, &body); err != nil {
			return false, err.Error()
		}
		for _, en := range body.Entries {
			if en.Kind == "truncation" && strings.Contains(en.Payload, fmt.Sprintf(`"bytes":%d`, len(lines[2])/2)) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", body.Entries)
	})
	agent.stop(syscall.SIGTERM)
	if out, err := run(t, "tripwire", "audit", "verify", "--dir", auditDir); err != nil {
		t.Fatalf("verify after repair failed: %v\n%s", err, out)
	}

	// Tamper: flip one byte inside the payload of the 4th entry.
	data, _ := os.ReadFile(seg)
	lines = strings.SplitAfter(string(data), "\n")
	seqRE := regexp.MustCompile(`"payload":\{"seq":(\d+),`)
	victim := seqRE.FindStringSubmatch(lines[3])[1]
	i := strings.Index(lines[3], `"ts":"`) + len(`"ts":"`) + 2
	b := []byte(lines[3])
	b[i] ^= 0x01
	lines[3] = string(b)
	writeFile(t, seg, strings.Join(lines, ""))
	out, err := run(t, "tripwire", "audit", "verify", "--dir", auditDir)
	if err == nil {
		t.Fatalf("verify of a tampered chain succeeded:\n%s", out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	if !strings.Contains(out, "seq "+victim) {
		t.Errorf("verify output does not name seq %s:\n%s", victim, out)
	}
}

// Config errors name the key and the line, and the agent refuses to start.
func TestBadConfigRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, `host: web-01
collector: {address: 127.0.0.1:7443, ca: ca.crt, cert: agent.crt, key: agent.key}
audit: {dir: audit}
rules:
  - name: passwd
    type: file
    paths: [/etc/passwd]
    severity: HIGH
    colour: red
`)
	out, err := run(t, "tripwire", "start", "--config", cfg)
	if err == nil {
		t.Fatalf("agent started with a bad config:\n%s", out)
	}
	for _, want := range []string{"config.yaml:9: rules[0].colour: unknown key"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	writeFile(t, cfg, strings.Replace(`host: web-01
collector: {address: 127.0.0.1:7443, ca: CA, cert: CA, key: CA}
audit: {dir: audit}
rules:
  - name: passwd
    type: file
    paths: [/etc/passwd, /does/not/exist]
    severity: HIGH
`, "CA", cfg, 3))
	out, _ = run(t, "tripwire", "start", "--config", cfg)
	for _, want := range []string{
		`config.yaml:8: rules[0].severity: "HIGH" is not one of INFO, WARN, CRITICAL`,
		`config.yaml:7: rules[0].paths[1]: cannot watch "/does/not/exist"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A full disk under the audit chain delays delivery and loses nothing: events that
// happen while the chain cannot be written arrive once space is back, and the outage is
// itself in the chain.
func TestFullDiskDelaysButLosesNothing(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("web-04", "WARN")
	auditDir := filepath.Join(e.dir, "audit-web-04")
	if err := os.MkdirAll(auditDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tripwire-e2e", auditDir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", auditDir).Run() })
	e.startAgent(cfg, hz)

	// Fill the file system.
	filler := filepath.Join(auditDir, "filler")
	out, _ := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").CombinedOutput()
	if !strings.Contains(string(out), "No space left") {
		t.Fatalf("dd did not fill the disk: %s", out)
	}
	// Read the decoy (each read a new process) until the agent says it cannot write.
	var pids []int
	waitFor(t, 20*time.Second, "the agent to report the chain unwritable", func() (bool, string) {
		pids = append(pids, asNobody(t, "cat", decoy))
		var h struct {
			Status     string `json:"status"`
			AuditError string `json:"audit_error"`
		}
		err := getJSON("http://"+hz+"/healthz", "", &h)
		return err == nil && h.AuditError != "", fmt.Sprintf("%+v %v", h, err)
	})
	for range 5 { // and a few more while it is down; the last 5 are surely held
		pids = append(pids, asNobody(t, "cat", decoy))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every read to reach the collector", func() (bool, string) {
		alerts, err := e.alerts("host=web-04&limit=1000")
		if err != nil {
			return false, err.Error()
		}
		seen := map[int]bool{}
		for _, a := range alerts {
			seen[a.EventDetail.PID] = true
		}
		var missing []int
		for _, p := range pids {
			if !seen[p] {
				missing = append(missing, p)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d reads, missing pids %v", len(pids), missing)
	})
	var body struct {
		Entries []struct {
			Payload string `json:"payload"`
		} `json:"entries"`
	}
	if err := getJSON("http://"+e.httpAddr+"/api/v1/audit?host=web-04&limit=1000", e.token, &body); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, en := range body.Entries {
		found = found || strings.Contains(en.Payload, `"what":"audit_write_failed"`)
	}
	if !found {
		t.Errorf("the outage is not recorded in the chain")
	}
	t.Logf("%d reads, %d of them while the chain could not be written, all delivered", len(pids), 5)
}

// Forced into the fsnotify fallback, the agent still reports writes, and says in
// /healthz and in each event what it cannot see.
func TestFsnotifyFallbackSaysWhatItMisses(t *testing.T) {
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("web-05", "WARN")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "watchers: {file: {mode: fsnotify}}")
	f.Close()
	e.startAgent(cfg, hz)
	var h healthzReport
	if err := getJSON("http://"+hz+"/healthz", "", &h); err != nil {
		t.Fatal(err)
	}
	if h.Status != "degraded" || len(h.Watchers) != 2 || h.Watchers[0].Name != "file" || h.Watchers[0].Mode != "fsnotify" || !strings.Contains(h.Watchers[0].Degraded, "read") {
		t.Errorf("healthz = %+v, want degraded, file watcher in fsnotify mode saying reads are not seen", h)
	}
	if err := os.WriteFile(decoy, []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the write alert", func() (bool, string) {
		alerts, err := e.alerts("host=web-05")
		if err != nil || len(alerts) == 0 {
			return false, fmt.Sprint(err)
		}
		d := alerts[0].EventDetail
		return d.Source == "fsnotify" && d.Op == "write" && d.Path == decoy && slices.Contains(d.Missing, "pid"), fmt.Sprintf("%+v", d)
	})
	// The collector knows too: the host is DEGRADED, with a WARN alert saying why.
	if st := e.hostStatus("web-05"); st != "DEGRADED" {
		t.Errorf("host status = %s, want DEGRADED", st)
	}
	health, err := e.alerts("type=HOST&host=web-05")
	if err != nil || len(health) != 1 || health[0].RuleName != "watcher-health" || health[0].Severity != "WARN" {
		t.Fatalf("HOST alerts of web-05 = %+v, %v; want one WARN watcher-health alert", health, err)
	}
}

// `tripwire-collector alerts --follow` prints each alert as it arrives, and keeps
// following across a collector restart.
func TestAlertsFollow(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("web-06", "CRITICAL")
	e.startAgent(cfg, hz)
	out := filepath.Join(e.dir, "follow.out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	follow := exec.Command(filepath.Join(binDir, "tripwire-collector"), "alerts", "--follow", "--config", filepath.Join(e.dir, "collector.yaml"))
	follow.Stdout = f
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })
	printed := func(pid int) func() (bool, string) {
		return func() (bool, string) {
			b, _ := os.ReadFile(out)
			return strings.Contains(string(b), fmt.Sprintf("pid=%d user=nobody", pid)), string(b)
		}
	}
	// The follower subscribes asynchronously: read until one of our reads shows up.
	var first int
	waitFor(t, 10*time.Second, "a read printed by the follower", func() (bool, string) {
		first = asNobody(t, "cat", decoy)
		time.Sleep(200 * time.Millisecond)
		return printed(first)()
	})
	e.coll.stop(syscall.SIGTERM)
	e.startCollector()
	second := asNobody(t, "cat", decoy)
	waitFor(t, 15*time.Second, "the read after the restart printed", printed(second))
	b, _ := os.ReadFile(out)
	if n := strings.Count(string(b), fmt.Sprintf("pid=%d ", first)); n != 1 {
		t.Errorf("the first alert was printed %d times:\n%s", n, b)
	}
}
