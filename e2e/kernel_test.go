package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody runs name as user nobody without waiting for it.
func nobody(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

func (e *env) waitHealthy(p *proc, healthz string) healthzReport {
	e.t.Helper()
	var h healthzReport
	waitFor(e.t, 15*time.Second, "agent /healthz", func() (bool, string) {
		if p.exited() {
			b, _ := os.ReadFile(p.log)
			e.t.Fatalf("agent exited:\n%s", b)
		}
		if err := getJSON("http://"+healthz+"/healthz", "", &h); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return h
}

func watcherMode(h healthzReport, name string) string {
	for _, w := range h.Watchers {
		if w.Name == name {
			return w.Mode
		}
	}
	return ""
}

// TestPasswdReadAndWrittenByNobody: the agent watches /etc/passwd; nobody reads it and
// writes it. So that nobody may write it without touching the host's, the agent runs in
// a mount namespace of its own where a world-writable copy is bind-mounted over
// /etc/passwd, and the test's processes enter that namespace.
func TestPasswdReadAndWrittenByNobody(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	cfg, hz := e.agentConfig("passwd-host", "{name: passwd, type: file, paths: [/etc/passwd], severity: CRITICAL}")
	copyPath := filepath.Join(e.dir, "passwd")
	orig, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, copyPath, string(orig))
	if err := os.Chmod(copyPath, 0o666); err != nil {
		t.Fatal(err)
	}
	agent := startCmd(t, e.dir, "tripwire", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		fmt.Sprintf("mount --bind %s /etc/passwd && exec %s start --config %s", copyPath, filepath.Join(binDir, "tripwire"), cfg))
	e.waitHealthy(agent, hz)
	inNS := func(args ...string) int {
		cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(agent.cmd.Process.Pid), "-m",
			"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return cmd.Process.Pid // nsenter and setpriv exec: the pid is the command's
	}
	readPID := inNS("cat", "/etc/passwd")
	writePID := inNS("sh", "-c", "echo '# tripwire e2e' >> /etc/passwd")

	// setpriv, which becomes cat, may read /etc/passwd itself under the same pid.
	read := e.waitAlert(5*time.Second, "host=passwd-host", func(a alert) bool {
		return a.EventDetail.PID == readPID && a.EventDetail.Exe == "/usr/bin/cat"
	})
	write := e.waitAlert(5*time.Second, "host=passwd-host", func(a alert) bool {
		return a.EventDetail.PID == writePID && a.EventDetail.Op == "write"
	})
	for _, c := range []struct {
		a       alert
		op, exe string
	}{{read, "read", "/usr/bin/cat"}, {write, "write", "/usr/bin/dash"}} {
		d := c.a.EventDetail
		if d.Path != "/etc/passwd" || d.Op != c.op || d.User != "nobody" || d.Exe != c.exe || c.a.RuleName != "passwd" {
			t.Errorf("%s alert = %+v; want %s of /etc/passwd by nobody with %s", c.op, d, c.op, c.exe)
		}
	}
	if now, _ := os.ReadFile("/etc/passwd"); string(now) != string(orig) {
		t.Fatal("the host's /etc/passwd changed: the bind mount did not hold")
	}
	if got, _ := os.ReadFile(copyPath); !strings.HasSuffix(string(got), "# tripwire e2e\n") {
		t.Errorf("the write did not reach the copy")
	}
}

// TestProcessTripwireInEveryMode: nc run by nobody with arguments is caught in each
// process watcher mode, forced by config, with its PID, PPID, user and command line.
func TestProcessTripwireInEveryMode(t *testing.T) {
	requireRoot(t)
	for _, mode := range []string{"ebpf", "netlink", "proc"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.startCollector()
			host := "proc-" + mode
			cfg, hz := e.agentConfigWith(host, fmt.Sprintf("watchers: {process: {mode: %s}}", mode),
				"{name: netcat, type: process, names: [nc, ncat], severity: CRITICAL}")
			h := e.waitHealthy(e.startAgent(cfg, hz), hz)
			if got := watcherMode(h, "process"); got != mode {
				t.Fatalf("process watcher mode %q, want %q (forced)", got, mode)
			}
			port := strings.Split(freeAddr(t), ":")[1]
			nc := nobody("nc", "-l", "127.0.0.1", port)
			if err := nc.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { nc.Process.Kill(); nc.Wait() }()
			a := e.waitAlert(5*time.Second, "type=PROCESS&host="+host, func(a alert) bool { return a.EventDetail.PID == nc.Process.Pid })
			d := a.EventDetail
			if d.PPID != os.Getpid() || d.User != "nobody" || d.UID == nil || *d.UID != 65534 || d.Cmdline != "nc -l 127.0.0.1 "+port || d.Source != mode {
				t.Errorf("alert detail = %+v; want ppid %d, user nobody, cmdline %q, source %s", d, os.Getpid(), "nc -l 127.0.0.1 "+port, mode)
			}
			if !strings.HasSuffix(d.Exe, "/nc.openbsd") && !strings.HasSuffix(d.Exe, "/nc") {
				t.Errorf("exe %q", d.Exe)
			}
			if a.RuleName != "netcat" || a.Severity != "CRITICAL" || a.TripwireType != "PROCESS" {
				t.Errorf("alert = %+v", a)
			}
			if mode != "ebpf" {
				return
			}
			// Short-lived: gone before user space could read /proc.
			short := nobody("nc", "-z", "127.0.0.1", "1")
			short.Run()
			s := e.waitAlert(5*time.Second, "type=PROCESS&host="+host, func(a alert) bool { return a.EventDetail.PID == short.Process.Pid })
			if s.EventDetail.Cmdline != "nc -z 127.0.0.1 1" || s.EventDetail.User != "nobody" || s.EventDetail.PPID != os.Getpid() {
				t.Errorf("short-lived nc: %+v", s.EventDetail)
			}
		})
	}
}

// TestRenamedBinaryStillMatches: a copy of nc under another name is caught by a rule
// that matches content, and not by one that matches names only.
func TestRenamedBinaryStillMatches(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	cfg, hz := e.agentConfig("renamed",
		"{name: netcat, type: process, names: [nc], match_content: true, severity: CRITICAL}",
		"{name: netcat-by-name, type: process, names: [nc], severity: INFO}")
	e.startAgent(cfg, hz)
	real, err := filepath.EvalSymlinks("/usr/bin/nc")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	innocent := filepath.Join(e.dir, "innocent")
	if err := os.WriteFile(innocent, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := nobody(innocent, "-z", "127.0.0.1", "1")
	run.Run()
	a := e.waitAlert(5*time.Second, "type=PROCESS&host=renamed", func(a alert) bool { return a.EventDetail.PID == run.Process.Pid })
	sum := sha256.Sum256(data)
	if a.RuleName != "netcat" || a.EventDetail.Exe != innocent || a.EventDetail.ExeSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("alert = %+v / %+v; want rule netcat, exe %s, its sha256", a, a.EventDetail, innocent)
	}
	time.Sleep(500 * time.Millisecond)
	alerts, err := e.alerts("type=PROCESS&host=renamed&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range alerts {
		if x.RuleName == "netcat-by-name" && x.EventDetail.PID == run.Process.Pid {
			t.Errorf("the name-only rule fired for a renamed copy: %+v", x)
		}
	}
}

// TestNetworkTripwiresInEveryMode: a connection from 127.0.0.2 to a decoy on port 2222
// and to a monitored service's port, with the monitor in each mode.
func TestNetworkTripwiresInEveryMode(t *testing.T) {
	requireRoot(t)
	for _, mode := range []string{"ebpf", "sockdiag"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.startCollector()
			svc, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			go func() {
				for {
					c, err := svc.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(io.Discard, c); c.Close() }()
				}
			}()
			svcPort := svc.Addr().(*net.TCPAddr).Port
			host := "net-" + mode
			cfg, hz := e.agentConfigWith(host, fmt.Sprintf("watchers: {network: {mode: %s}}", mode),
				"{name: ssh-decoy, type: network, ports: [2222], mode: decoy, severity: WARN}",
				fmt.Sprintf("{name: svc, type: network, ports: [%d], mode: monitor, direction: inbound, severity: INFO}", svcPort))
			h := e.waitHealthy(e.startAgent(cfg, hz), hz)
			if got := watcherMode(h, "network"); got != mode {
				t.Fatalf("network watcher mode %q, want %q", got, mode)
			}
			from := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}

			c, err := from.Dial("tcp", "127.0.0.1:2222")
			if err != nil {
				t.Fatal(err)
			}
			decoyPort := c.LocalAddr().(*net.TCPAddr).Port
			fmt.Fprint(c, "SSH-2.0-probe\r\n")
			io.Copy(io.Discard, c) // the decoy closes after reading
			c.Close()
			d := e.waitAlert(5*time.Second, "type=NETWORK&host="+host, func(a alert) bool { return a.EventDetail.SrcPort == decoyPort })
			if x := d.EventDetail; x.SrcIP != "127.0.0.2" || x.DstPort != 2222 || x.Protocol != "tcp" || x.Mode != "decoy" || !strings.Contains(x.FirstBytes, "SSH-2.0-probe") || d.RuleName != "ssh-decoy" {
				t.Errorf("decoy alert = %+v %+v", d, x)
			}

			c, err = from.Dial("tcp", svc.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			monPort := c.LocalAddr().(*net.TCPAddr).Port
			if mode == "sockdiag" {
				time.Sleep(600 * time.Millisecond) // held open across polls: sockdiag sees sockets, not handshakes
			}
			c.Close()
			m := e.waitAlert(5*time.Second, "type=NETWORK&host="+host, func(a alert) bool { return a.EventDetail.SrcPort == monPort })
			if x := m.EventDetail; x.SrcIP != "127.0.0.2" || x.DstPort != svcPort || x.Protocol != "tcp" || x.Mode != "monitor" || x.Direction != "inbound" || x.Source != mode || m.RuleName != "svc" {
				t.Errorf("monitor alert = %+v %+v", m, x)
			}
			if x := m.EventDetail; x.PID != os.Getpid() {
				t.Errorf("monitor alert names pid %d as the listener's owner, want this test (%d)", x.PID, os.Getpid())
			}
		})
	}
}

// TestAllowlistAndRedaction: an allowlisted reader raises nothing (but is counted), a
// secret on a command line never reaches the chain or the collector.
func TestAllowlistAndRedaction(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy := filepath.Join(e.dir, "shadow-copy")
	writeFile(t, decoy, "x\n")
	cfg, hz := e.agentConfig("allow",
		fmt.Sprintf("{name: shadow, type: file, paths: [%s], severity: CRITICAL, allow: {users: [nobody]}}", decoy),
		"{name: netcat, type: process, names: [nc], severity: CRITICAL}")
	e.startAgent(cfg, hz)

	asNobody(t, "cat", decoy) // the nightly backup, say
	root := exec.Command("cat", decoy)
	if err := root.Run(); err != nil {
		t.Fatal(err)
	}
	e.waitAlert(5*time.Second, "type=FILE&host=allow", func(a alert) bool { return a.EventDetail.PID == root.Process.Pid })
	alerts, _ := e.alerts("type=FILE&host=allow")
	for _, a := range alerts {
		if a.EventDetail.User == "nobody" {
			t.Errorf("allowlisted read raised %+v", a)
		}
	}
	var h struct {
		Suppressed map[string]int `json:"suppressed"`
	}
	if err := getJSON("http://"+hz+"/healthz", "", &h); err != nil || h.Suppressed["shadow"] < 1 {
		t.Errorf("/healthz suppressed = %v (err %v), want shadow ≥ 1", h.Suppressed, err)
	}

	nc := nobody("nc", "-z", "127.0.0.1", "1", "--password=hunter2", "https://bob:hunter2@example.com/")
	nc.Run()
	a := e.waitAlert(5*time.Second, "type=PROCESS&host=allow", func(a alert) bool { return a.EventDetail.PID == nc.Process.Pid })
	if want := "nc -z 127.0.0.1 1 --password=[REDACTED] https://bob:[REDACTED]@example.com/"; a.EventDetail.Cmdline != want || !a.EventDetail.Redacted {
		t.Errorf("cmdline %q (redacted %v), want %q", a.EventDetail.Cmdline, a.EventDetail.Redacted, want)
	}
	var audit struct {
		Entries []struct {
			Payload string `json:"payload"`
		} `json:"entries"`
	}
	if err := getJSON("http://"+e.httpAddr+"/api/v1/audit?host=allow&limit=1000", e.token, &audit); err != nil {
		t.Fatal(err)
	}
	for _, en := range audit.Entries {
		if strings.Contains(en.Payload, "hunter2") {
			t.Errorf("the secret reached the collector: %s", en.Payload)
		}
	}
	filepath.Walk(filepath.Join(e.dir, "audit-allow"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "hunter2") {
				t.Errorf("the secret is in the agent's chain file %s", p)
			}
		}
		return nil
	})
}

// chainText is every segment of an agent's chain, concatenated.
func chainText(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// TestSignalsToTheAgentAreRecorded: a SIGTERM is recorded by the agent it stops, with
// the sender; a SIGKILL, which leaves no time to write, is recorded by the next start.
func TestSignalsToTheAgentAreRecorded(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	_, cfg, hz := e.decoyAgentConfig("signals", "INFO")
	auditDir := filepath.Join(e.dir, "audit-signals")

	agent := e.startAgent(cfg, hz)
	term := exec.Command("/bin/kill", "-TERM", strconv.Itoa(agent.cmd.Process.Pid))
	if err := term.Run(); err != nil {
		t.Fatal(err)
	}
	<-agent.done
	text := chainText(t, auditDir)
	if !regexp.MustCompile(`"what":"signal_received".*"signal":\{"name":"SIGTERM".*"sender_pid":` + strconv.Itoa(term.Process.Pid) + `,"sender_uid":0,"sender_comm":"kill"`).MatchString(text) {
		t.Errorf("no signal_received record for SIGTERM from pid %d:\n%s", term.Process.Pid, lastLines(text, 5))
	}
	if strings.Index(text, `"signal_received"`) > strings.LastIndex(text, `"agent_stopped"`) {
		t.Errorf("the signal is recorded after the final stop record")
	}

	agent = e.startAgent(cfg, hz)
	kill := exec.Command("/bin/kill", "-KILL", strconv.Itoa(agent.cmd.Process.Pid))
	if err := kill.Run(); err != nil {
		t.Fatal(err)
	}
	<-agent.done
	e.startAgent(cfg, hz)
	waitFor(t, 5*time.Second, "signal_before_start in the chain", func() (bool, string) {
		text := chainText(t, auditDir)
		re := regexp.MustCompile(`"what":"signal_before_start".*"signal":\{"name":"SIGKILL".*"target_pid":` + strconv.Itoa(agent.cmd.Process.Pid) + `,"sender_pid":` + strconv.Itoa(kill.Process.Pid))
		return re.MatchString(text), lastLines(text, 3)
	})
	if out, err := run(t, "tripwire", "audit", "verify", "--dir", auditDir); err != nil {
		t.Errorf("chain does not verify after a SIGKILL: %v\n%s", err, out)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestDoctorNamesMissingCapabilities: with every capability, doctor says each watcher
// runs in its best mode; without them, it names the capability each better mode needs.
func TestDoctorNamesMissingCapabilities(t *testing.T) {
	requireRoot(t)
	out, err := run(t, "tripwire", "doctor")
	if err != nil {
		t.Fatalf("doctor as root: %v\n%s", err, out)
	}
	rel, _ := exec.Command("uname", "-r").Output()
	for _, want := range []string{"kernel " + strings.TrimSpace(string(rel)), "file     mode fanotify", "process  mode ebpf", "network  mode ebpf", "signals  mode ebpf", "status: ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	cmd := exec.Command("setpriv", "--bounding-set=-all", filepath.Join(binDir, "tripwire"), "doctor")
	b, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("doctor without capabilities exited %d (%v), want 1", code, err)
	}
	for _, want := range []string{"file     mode fsnotify", "CAP_SYS_ADMIN would enable mode fanotify", "CAP_BPF would enable mode ebpf", "CAP_PERFMON would enable mode ebpf", "status: degraded"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("doctor without capabilities lacks %q:\n%s", want, b)
		}
	}
}

// unitCapabilities reads AmbientCapabilities from the shipped systemd unit.
func unitCapabilities(t *testing.T) []string {
	f, err := os.Open("../deploy/systemd/tripwire-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "AmbientCapabilities="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatal("the unit grants no AmbientCapabilities")
	return nil
}

// TestAgentRunsWithTheUnitsCapabilitiesOnly runs the agent as an unprivileged user
// holding exactly the capabilities deploy/systemd/tripwire-agent.service grants, and
// expects every watcher in its best mode and a read by another user caught.
func TestAgentRunsWithTheUnitsCapabilitiesOnly(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("least-privilege", "WARN")
	cfgText, _ := os.ReadFile(cfg)
	writeFile(t, cfg, strings.Replace(string(cfgText), "rules:\n", "rules:\n  - {name: netcat, type: process, names: [nc], severity: WARN}\n  - {name: ssh-decoy, type: network, ports: [2222], mode: decoy, severity: WARN}\n", 1))
	// The agent's user owns its key and audit directory, as the unit's comments say.
	for _, p := range []string{filepath.Join(e.dir, "pki", "least-privilege"), filepath.Join(e.dir, "audit-least-privilege")} {
		os.MkdirAll(p, 0o700)
		filepath.Walk(p, func(path string, _ os.FileInfo, _ error) error { return os.Chown(path, 65534, 65534) })
	}
	// As the unit's ExecStartPre does: the pin directory and what is pinned in it
	// belong to the agent's user.
	os.MkdirAll("/sys/fs/bpf/tripwire", 0o700)
	chownAll := func(uid int) {
		filepath.Walk("/sys/fs/bpf/tripwire", func(path string, _ os.FileInfo, _ error) error { return os.Chown(path, uid, uid) })
	}
	chownAll(65534)
	defer chownAll(0)
	var set []string
	for _, c := range unitCapabilities(t) {
		set = append(set, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	caps := strings.Join(set, ",")
	agent := startCmd(t, e.dir, "tripwire", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,"+caps, "--ambient-caps=-all,"+caps, "--bounding-set=-all,"+caps,
		filepath.Join(binDir, "tripwire"), "start", "--config", cfg)
	h := e.waitHealthy(agent, hz)
	for name, want := range map[string]string{"file": "fanotify", "process": "ebpf", "network": "decoy", "signals": "ebpf"} {
		if got := watcherMode(h, name); got != want {
			t.Errorf("watcher %s in mode %q with the unit's capabilities, want %q (healthz %+v)", name, got, want, h.Watchers)
		}
	}
	reader := exec.Command("cat", decoy)
	if err := reader.Run(); err != nil {
		t.Fatal(err)
	}
	a := e.waitAlert(5*time.Second, "host=least-privilege", func(a alert) bool { return a.EventDetail.PID == reader.Process.Pid })
	if a.EventDetail.User != "root" || a.EventDetail.Exe != "/usr/bin/cat" {
		t.Errorf("alert %+v: the unprivileged agent could not name the reader", a.EventDetail)
	}
}
