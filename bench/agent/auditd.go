package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// auditdBacklog is the kernel's audit backlog while auditd runs: the value of Debian's
// stock audit.rules, so that auditd is measured as it is deployed.
const auditdBacklog = "8192"

// auditd is an auditd this program started, with a config of its own that logs to the
// run's temp dir (never to /var/log/audit) and never rotates, so that a burst's records
// can be counted from a byte offset.
type auditd struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	backlog string // the kernel's backlog limit before, put back at stop
}

func auditctl(args ...string) (string, error) {
	out, err := exec.Command("auditctl", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("auditctl %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// auditStatus returns `auditctl -s` as key → value.
func auditStatus() (map[string]string, error) {
	out, err := auditctl("-s")
	if err != nil {
		return nil, err
	}
	st := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			st[k] = v
		}
	}
	return st, nil
}

// auditdPID is the pid of the audit daemon the kernel knows (0: none).
func auditdPID() (int, error) {
	st, err := auditStatus()
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(st["pid"])
}

// resetAudit removes every audit rule and disables auditing.
func resetAudit() error {
	if _, err := auditctl("-D"); err != nil {
		return err
	}
	_, err := auditctl("-e", "0")
	return err
}

// startAuditd starts auditd in the foreground with its own config, enables auditing
// with the stock backlog and adds rules (each one auditctl command line).
func (e *env) startAuditd(rules ...[]string) (*auditd, error) {
	dir, err := os.MkdirTemp(e.dir, "auditd-")
	if err != nil {
		return nil, err
	}
	conf, err := os.ReadFile("/etc/audit/auditd.conf")
	if err != nil {
		return nil, fmt.Errorf("reading the stock auditd config: %w", err)
	}
	a := &auditd{logPath: filepath.Join(dir, "audit.log"), exited: make(chan struct{})}
	conf = regexp.MustCompile(`(?m)^log_file\s*=.*$`).ReplaceAll(conf, []byte("log_file = "+a.logPath))
	conf = regexp.MustCompile(`(?m)^max_log_file_action\s*=.*$`).ReplaceAll(conf, []byte("max_log_file_action = IGNORE"))
	if err := os.WriteFile(filepath.Join(dir, "auditd.conf"), conf, 0o640); err != nil {
		return nil, err
	}
	st, err := auditStatus()
	if err != nil {
		return nil, err
	}
	a.backlog = st["backlog_limit"]
	a.cmd = exec.Command("auditd", "-n", "-c", dir)
	a.cmd.Stdout, a.cmd.Stderr = os.Stderr, os.Stderr
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting auditd: %w", err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	e.mu.Lock()
	e.auditd = a
	e.mu.Unlock()
	if err := a.waitRegistered(10 * time.Second); err != nil {
		return nil, err
	}
	for _, args := range append([][]string{{"-b", auditdBacklog}, {"-e", "1"}}, rules...) {
		if _, err := auditctl(args...); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *auditd) waitRegistered(timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-a.exited:
			return fmt.Errorf("auditd exited at start")
		default:
		}
		if pid, err := auditdPID(); err != nil {
			return err
		} else if pid == a.cmd.Process.Pid {
			return nil
		}
	}
	return fmt.Errorf("auditd did not register with the kernel within %s", timeout)
}

// stop removes every rule, stops auditd, disables auditing and puts the backlog limit
// back.
func (a *auditd) stop() error {
	_, err := auditctl("-D")
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
	}
	if _, e := auditctl("-e", "0"); err == nil {
		err = e
	}
	if a.backlog != "" {
		if _, e := auditctl("-b", a.backlog); err == nil {
			err = e
		}
	}
	return err
}

// stopAuditd stops the auditd started last.
func (e *env) stopAuditd() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.auditd
	e.auditd = nil
	if a == nil { // cleanup got there first
		return nil
	}
	return a.stop()
}

// pid is auditd's pid.
func (a *auditd) pid() int { return a.cmd.Process.Pid }

// logSize is the size of auditd's log so far.
func (a *auditd) logSize() (int64, error) {
	fi, err := os.Stat(a.logPath)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// settle waits until auditd's log has not grown for quiet with the kernel's backlog
// empty (or timeout has passed), and returns when the log last grew.
func (a *auditd) settle(quiet, timeout time.Duration) (time.Time, error) {
	last, err := a.logSize()
	if err != nil {
		return time.Time{}, err
	}
	changed := time.Now()
	for deadline := changed.Add(timeout); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		n, err := a.logSize()
		if err != nil {
			return time.Time{}, err
		}
		if n != last {
			last, changed = n, time.Now()
			continue
		}
		if time.Since(changed) < quiet {
			continue
		}
		st, err := auditStatus()
		if err != nil {
			return time.Time{}, err
		}
		if st["backlog"] == "0" {
			break
		}
	}
	return changed, nil
}

// hasRule says whether the kernel still holds a rule with key: another user of the audit
// subsystem may have removed it.
func hasRule(key string) (bool, error) {
	out, err := auditctl("-l") // a watch lists as "-k KEY", a syscall rule as "-F key=KEY"
	for _, f := range strings.Fields(out) {
		if f == key || f == "key="+key {
			return true, err
		}
	}
	return false, err
}

// kauditdPID finds the kernel thread that hands audit records to auditd.
func kauditdPID() (int, error) {
	procs, err := filepath.Glob("/proc/[0-9]*/comm")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && string(b) == "kauditd\n" {
			return strconv.Atoi(filepath.Base(filepath.Dir(p)))
		}
	}
	return 0, fmt.Errorf("no kauditd thread in /proc")
}

// auditFiles counts, from offset on in an audit log, the distinct file names under dir
// in the PATH records of the events carrying key, by what happened to them: created,
// opened for writing (an existing file), deleted. It also returns how many records those
// events made.
func auditFiles(logPath string, offset int64, key, dir string) (created, written, deleted, records int, err error) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return 0, 0, 0, 0, err
	}
	keyed := map[string]bool{}        // event ids whose SYSCALL record carries key
	perEvent := map[string]int{}      // records per event id
	paths := map[string][][2]string{} // event id → (name, nametype) of its PATH records
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		id := field(line, "msg=audit(", ")")
		perEvent[id]++
		switch {
		case strings.HasPrefix(line, "type=SYSCALL ") && strings.Contains(line, ` key="`+key+`"`):
			keyed[id] = true
		case strings.HasPrefix(line, "type=PATH "):
			paths[id] = append(paths[id], [2]string{field(line, ` name="`, `"`), field(line, " nametype=", " ")})
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, 0, 0, err
	}
	sets := map[string]map[string]bool{"CREATE": {}, "NORMAL": {}, "DELETE": {}}
	for id := range keyed {
		records += perEvent[id]
		for _, p := range paths[id] {
			if set := sets[p[1]]; set != nil && strings.HasPrefix(p[0], dir+"/") {
				set[p[0]] = true
			}
		}
	}
	return len(sets["CREATE"]), len(sets["NORMAL"]), len(sets["DELETE"]), records, nil
}

// field returns the text of line between the first start and the next end after it
// (or the end of line).
func field(line, start, end string) string {
	_, rest, ok := strings.Cut(line, start)
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, end+"\x1d"); i >= 0 {
		return rest[:i]
	}
	return rest
}
