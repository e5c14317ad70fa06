package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on every
// Linux architecture this runs on).
const clockTick = 100

// env is one run: a temp dir with agent certificates, and everything started that must
// be stopped whatever happens.
type env struct {
	dir       string
	bin       string
	collector string // an unused loopback address: the agent retries it in the background

	mu     sync.Mutex
	agents map[*agentProc]bool
	auditd *auditd
	done   bool
}

func newEnv(bin string) (*env, error) {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"tripwire", "tripwire-collector"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Errorf("%w: run `make build` or pass -bin", err)
		}
	}
	dir, err := os.MkdirTemp("", "tripwire-bench-agent-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, bin: bin, agents: map[*agentProc]bool{}}
	pki := filepath.Join(dir, "pki")
	for _, args := range [][]string{{"pki", "init", "--dir", pki}, {"pki", "issue", "--dir", pki, "--host", "bench"}} {
		if out, err := exec.Command(filepath.Join(bin, "tripwire-collector"), args...).CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("tripwire-collector %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if e.collector, err = freeAddr(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

// cleanup stops every agent and auditd still running, removes every audit rule and
// disables auditing, then removes the temp dir. It may be called more than once, from
// any goroutine.
func (e *env) cleanup() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return
	}
	e.done = true
	for a := range e.agents {
		a.kill()
	}
	if e.auditd != nil {
		if err := e.auditd.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench/agent: cleaning up the audit subsystem:", err)
		}
	}
	if err := resetAudit(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/agent: cleaning up the audit subsystem:", err)
	}
	os.RemoveAll(e.dir)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// agentProc is one running agent.
type agentProc struct {
	cmd      *exec.Cmd
	healthz  string
	auditDir string
	logPath  string
	exited   chan struct{}
}

// startAgent writes a config named name with rules (YAML flow mappings) and starts the
// agent on it, returning once /healthz answers: the watches are in place by then.
func (e *env) startAgent(name string, rules ...string) (*agentProc, error) {
	hz, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `host: bench
collector: {address: %q, ca: pki/bench/ca.crt, cert: pki/bench/agent.crt, key: pki/bench/agent.key, server_name: localhost}
audit: {dir: %s-audit}
healthz: %q
rules:
`, e.collector, name, hz)
	for _, r := range rules {
		fmt.Fprintf(&cfg, "  - %s\n", r)
	}
	cfgPath := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	a := &agentProc{
		cmd:      exec.Command(filepath.Join(e.bin, "tripwire"), "start", "--config", cfgPath),
		healthz:  hz,
		auditDir: filepath.Join(e.dir, name+"-audit"),
		logPath:  logf.Name(),
		exited:   make(chan struct{}),
	}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { a.cmd.Wait(); logf.Close(); close(a.exited) }()
	e.mu.Lock()
	e.agents[a] = true
	e.mu.Unlock()
	if err := a.waitHealthy(30 * time.Second); err != nil {
		e.stopAgent(a)
		return nil, err
	}
	return a, nil
}

func (a *agentProc) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-a.exited:
			return fmt.Errorf("the agent exited at start: %s", a.logTail())
		default:
		}
		if resp, err := http.Get("http://" + a.healthz + "/healthz"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("the agent's /healthz did not answer within %s: %s", timeout, a.logTail())
}

func (a *agentProc) logTail() string {
	b, _ := os.ReadFile(a.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

// kill ends the agent at once (cleanup after a failure).
func (a *agentProc) kill() {
	select {
	case <-a.exited:
	default:
		a.cmd.Process.Kill()
		<-a.exited
	}
}

// stopAgent stops the agent as an operator would (SIGINT: the pipeline drains and the
// stop is recorded in the chain) and waits for it.
func (e *env) stopAgent(a *agentProc) {
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		a.kill()
	}
	e.mu.Lock()
	delete(e.agents, a)
	e.mu.Unlock()
}

// metric sums the samples of the agent's /metrics whose line starts with prefix (a
// metric name, or a name and the start of its labels).
func (a *agentProc) metric(prefix string) (float64, error) {
	resp, err := http.Get("http://" + a.healthz + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		if rest := line[len(prefix):]; !strings.Contains(prefix, "{") && !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") {
			continue // another metric whose name starts with this one's
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// settle waits until the metric at prefix has not changed for quiet (or timeout has
// passed) and returns when it last changed.
func (a *agentProc) settle(prefix string, quiet, timeout time.Duration) (time.Time, error) {
	last, err := a.metric(prefix)
	if err != nil {
		return time.Time{}, err
	}
	changed := time.Now()
	for deadline := changed.Add(timeout); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		v, err := a.metric(prefix)
		if err != nil {
			return time.Time{}, err
		}
		if v != last {
			last, changed = v, time.Now()
		} else if time.Since(changed) >= quiet {
			break
		}
	}
	return changed, nil
}

// readChain reads the whole chain of a stopped agent with agent/audit's reader.
func readChain(dir string) ([]chain.Payload, error) {
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		return nil, fmt.Errorf("opening the chain in %s: %w", dir, err)
	}
	defer l.Close()
	var out []chain.Payload
	for next := uint64(1); ; {
		entries, err := l.ReadFrom(next, 4096)
		if err != nil {
			return nil, fmt.Errorf("reading the chain in %s from seq %d: %w", dir, next, err)
		}
		if len(entries) == 0 {
			return out, nil
		}
		for _, en := range entries {
			var p chain.Payload
			if err := json.Unmarshal(en.Payload, &p); err != nil {
				return nil, fmt.Errorf("chain entry %d: %w", en.Seq, err)
			}
			out = append(out, p)
		}
		next = entries[len(entries)-1].Seq + 1
	}
}

// gapsLost sums the losses the chain records as gap entries.
func gapsLost(payloads []chain.Payload) uint64 {
	var n uint64
	for _, p := range payloads {
		if p.Kind == chain.KindGap && p.Notice != nil {
			n += p.Notice.Lost
		}
	}
	return n
}

// cpuTime is a process's user plus system time from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: the fields that follow start after
	// its closing parenthesis, with the state (field 3).
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want ≥ 13", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}

// memKB reads VmRSS and VmHWM (kB) from /proc/<pid>/status.
func memKB(pid int) (rss, hwm int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return rss, hwm, sc.Err()
}

// forkExec runs /bin/true and waits for it, returning its pid. It forks with the
// runtime's clone(CLONE_VFORK) and nothing else: no pipes, no /dev/null opened.
func forkExec() (int, error) {
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
	if err != nil {
		return 0, fmt.Errorf("fork+exec /bin/true: %w", err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return 0, fmt.Errorf("waiting for /bin/true: %w", err)
	}
	return pid, nil
}
