package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// burstResult is what one monitor made of a file burst.
type burstResult struct {
	created, written, deleted int           // distinct files seen per operation
	cpu                       time.Duration // the monitor's CPU time
	busy                      time.Duration // from the burst's start to the monitor's last output
	lost                      string
}

// fileBurst creates, writes and deletes n files in a watched directory, once with no
// monitoring (for the burst's own time), once under the agent and once under auditd,
// and prints, for each monitor, the distinct files it saw per operation and its CPU.
func (e *env) fileBurst(n int) error {
	dir, err := e.benchDir("burst-none")
	if err != nil {
		return err
	}
	alone, err := burst(dir, n)
	if err != nil {
		return err
	}
	tw, err := e.burstTripwire(n)
	if err != nil {
		return err
	}
	ad, err := e.burstAuditd(n)
	if err != nil {
		return err
	}
	fmt.Printf("3. file burst: create, write (open O_WRONLY, 64 bytes), delete %d files in a watched directory, phase by phase\n", n)
	fmt.Printf("   the burst alone, no monitoring: %s\n", alone.Round(time.Millisecond))
	fmt.Printf("   %-9s %9s %9s %9s %11s %14s %9s  %s\n", "", "created", "written", "deleted", "CPU", "% of one CPU", "over", "lost")
	for _, r := range []struct {
		name string
		burstResult
	}{{"tripwire", tw}, {"auditd", ad}} {
		fmt.Printf("   %-9s %9d %9d %9d %10.2fs %13.0f%% %8.2fs  %s\n", r.name, r.created, r.written, r.deleted,
			r.cpu.Seconds(), 100*r.cpu.Seconds()/r.busy.Seconds(), r.busy.Seconds(), r.lost)
	}
	fmt.Printf("   tripwire CPU / auditd CPU: %.2f (goal < 0.33, all %d captured); %d CPUs\n", tw.cpu.Seconds()/ad.cpu.Seconds(), n, runtime.NumCPU())
	fmt.Printf("   tripwire: agent utime+stime; auditd: auditd + kauditd; neither counts the work done\n")
	fmt.Printf("   in the bursting process's own syscalls (fanotify queueing, audit record building)\n")
	return nil
}

func (e *env) burstTripwire(n int) (burstResult, error) {
	var r burstResult
	dir, err := e.benchDir("burst-tripwire")
	if err != nil {
		return r, err
	}
	a, err := e.startAgent("burst", fmt.Sprintf("{name: burst, type: file, paths: [%s], severity: WARN}", dir))
	if err != nil {
		return r, err
	}
	defer e.stopAgent(a)
	cpu0, err := cpuTime(a.pid())
	if err != nil {
		return r, err
	}
	start := time.Now()
	if _, err := burst(dir, n); err != nil {
		return r, err
	}
	last, err := a.settle(`tripwire_agent_events_total{type="FILE"}`, 2*time.Second, 10*time.Minute)
	if err != nil {
		return r, err
	}
	cpu1, err := cpuTime(a.pid())
	if err != nil {
		return r, err
	}
	lost, err := a.metric("tripwire_agent_events_lost_total")
	if err != nil {
		return r, err
	}
	e.stopAgent(a)
	payloads, err := readChain(a.auditDir)
	if err != nil {
		return r, err
	}
	seen := map[string]map[string]bool{watcher.OpCreate: {}, watcher.OpWrite: {}, watcher.OpRemove: {}}
	for _, p := range payloads {
		if p.Kind == chain.KindEvent && p.Event.Rule == "burst" && strings.HasPrefix(p.Event.Path, dir+"/") && seen[p.Event.Op] != nil {
			seen[p.Event.Op][p.Event.Path] = true
		}
	}
	r = burstResult{created: len(seen[watcher.OpCreate]), written: len(seen[watcher.OpWrite]), deleted: len(seen[watcher.OpRemove]),
		cpu: cpu1 - cpu0, busy: last.Sub(start),
		lost: fmt.Sprintf("%d in gap entries, %.0f in tripwire_agent_events_lost_total", gapsLost(payloads), lost)}
	return r, nil
}

func (e *env) burstAuditd(n int) (burstResult, error) {
	var r burstResult
	dir, err := e.benchDir("burst-auditd")
	if err != nil {
		return r, err
	}
	a, err := e.startAuditd([]string{"-w", dir, "-p", "wa", "-k", "twburst"})
	if err != nil {
		return r, err
	}
	defer e.stopAuditd()
	kauditd, err := kauditdPID()
	if err != nil {
		return r, err
	}
	if _, err := a.settle(time.Second, 10*time.Second); err != nil { // auditd's own start-up records
		return r, err
	}
	offset, err := a.logSize()
	if err != nil {
		return r, err
	}
	cpu0, lost0, err := auditdCost(a.pid(), kauditd)
	if err != nil {
		return r, err
	}
	start := time.Now()
	if _, err := burst(dir, n); err != nil {
		return r, err
	}
	last, err := a.settle(2*time.Second, 10*time.Minute)
	if err != nil {
		return r, err
	}
	if ok, err := hasRule("twburst"); err != nil {
		return r, err
	} else if !ok {
		return r, fmt.Errorf("the audit rule on %s was removed during the burst: another user of the audit subsystem is running", dir)
	}
	cpu1, lost1, err := auditdCost(a.pid(), kauditd)
	if err != nil {
		return r, err
	}
	created, written, deleted, records, err := auditFiles(a.logPath, offset, "twburst", dir)
	if err != nil {
		return r, err
	}
	return burstResult{created: created, written: written, deleted: deleted, cpu: cpu1 - cpu0, busy: last.Sub(start),
		lost: fmt.Sprintf("%d by the kernel (auditctl -s lost); %d records", lost1-lost0, records)}, nil
}

// auditdCost returns the CPU time of auditd and kauditd, and the kernel's count of lost
// audit records.
func auditdCost(auditd, kauditd int) (time.Duration, int, error) {
	a, err := cpuTime(auditd)
	if err != nil {
		return 0, 0, err
	}
	k, err := cpuTime(kauditd)
	if err != nil {
		return 0, 0, err
	}
	st, err := auditStatus()
	if err != nil {
		return 0, 0, err
	}
	lost, err := strconv.Atoi(st["lost"])
	if err != nil {
		return 0, 0, fmt.Errorf("auditctl -s: lost %q: %w", st["lost"], err)
	}
	return a + k, lost, nil
}

// burst creates n empty files in dir, then opens each for writing and writes 64 bytes,
// then deletes them all, and returns how long that took.
func burst(dir string, n int) (time.Duration, error) {
	name := func(i int) string { return filepath.Join(dir, fmt.Sprintf("f%06d", i)) }
	data := make([]byte, 64)
	phases := []struct {
		what string
		do   func(path string) error
	}{
		{"creating", func(path string) error {
			fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err == nil {
				err = unix.Close(fd)
			}
			return err
		}},
		{"writing", func(path string) error {
			fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			_, err = unix.Write(fd, data)
			unix.Close(fd)
			return err
		}},
		{"deleting", unix.Unlink},
	}
	start := time.Now()
	for _, ph := range phases {
		for i := range n {
			if err := ph.do(name(i)); err != nil {
				return 0, fmt.Errorf("%s %s: %w", ph.what, name(i), err)
			}
		}
	}
	return time.Since(start), nil
}
