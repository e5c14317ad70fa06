package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// monitor is one column of the per-syscall table: what watches while the rows run.
type monitor struct {
	name  string
	start func() (stop func() error, err error)
}

// op is one row: an operation timed in a loop.
type op struct {
	name string
	do   func() error
}

// syscalls prints the cost of each op under no monitoring, the agent and auditd, best
// of rounds, as ns/op and as a ratio to no monitoring.
func (e *env) syscalls(opTime time.Duration, rounds int) error {
	dir, err := e.benchDir("syscalls")
	if err != nil {
		return err
	}
	watched, unwatched := filepath.Join(dir, "watched", "secret"), filepath.Join(dir, "other", "plain")
	for _, p := range []string{watched, unwatched} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
			return err
		}
	}
	buf := make([]byte, 4096)
	ops := []op{
		{"open+read, watched file", func() error { return openRead(watched, buf) }},
		{"open+read, unwatched file", func() error { return openRead(unwatched, buf) }},
		{"fork+exec /bin/true", func() error { _, err := forkExec(); return err }},
	}
	monitors := []monitor{
		{"none", func() (func() error, error) { return func() error { return nil }, nil }},
		{"tripwire", func() (func() error, error) {
			a, err := e.startAgent("syscalls",
				fmt.Sprintf("{name: watched, type: file, paths: [%s], severity: CRITICAL}", watched),
				"{name: true, type: process, names: [true], severity: INFO}")
			if err != nil {
				return nil, err
			}
			return func() error { e.stopAgent(a); return nil }, nil
		}},
		{"auditd", func() (func() error, error) {
			_, err := e.startAuditd([]string{"-w", watched, "-p", "rwa", "-k", "twbench"},
				[]string{"-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "twbench"})
			return e.stopAuditd, err
		}},
	}
	best := make([][]float64, len(ops)) // [op][monitor] ns/op
	for i := range best {
		best[i] = make([]float64, len(monitors))
	}
	for range rounds {
		for m, mon := range monitors {
			stop, err := mon.start()
			if err != nil {
				return fmt.Errorf("starting %s: %w", mon.name, err)
			}
			for o, op := range ops {
				ns, err := timeOp(op.do, opTime)
				if err != nil {
					stop()
					return fmt.Errorf("%s under %s: %w", op.name, mon.name, err)
				}
				if best[o][m] == 0 || ns < best[o][m] {
					best[o][m] = ns
				}
			}
			if err := stop(); err != nil {
				return fmt.Errorf("stopping %s: %w", mon.name, err)
			}
		}
	}
	fmt.Printf("1. per-syscall cost, ns/op (× no monitoring), best of %d round(s) of %s per cell\n", rounds, opTime)
	fmt.Printf("   tripwire: a file rule on the watched file, a process rule matching `true`\n")
	fmt.Printf("   auditd: -w FILE -p rwa, -a always,exit -F arch=b64 -S execve (backlog %s)\n", auditdBacklog)
	fmt.Printf("   %-28s %12s %22s %22s\n", "", "none", "tripwire", "auditd")
	for o, op := range ops {
		fmt.Printf("   %-28s %12.0f", op.name, best[o][0])
		for m := 1; m < len(monitors); m++ {
			fmt.Printf(" %13.0f (%5.2f×)", best[o][m], best[o][m]/best[o][0])
		}
		fmt.Println()
	}
	return nil
}

// openRead opens path, reads up to len(buf) bytes and closes it.
func openRead(path string, buf []byte) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	_, err = unix.Read(fd, buf)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// timeOp runs do in a loop for about d and returns the mean ns per call.
func timeOp(do func() error, d time.Duration) (float64, error) {
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for range 16 {
			if err := do(); err != nil {
				return 0, err
			}
		}
		n += 16
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n), nil
}
