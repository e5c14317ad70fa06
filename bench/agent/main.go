// Command agent measures what the tripwire agent costs the host it watches, side by
// side with the Linux audit subsystem (auditd) doing the same job, in one run:
//
//  1. per-syscall overhead: open()+read() of a watched and of an unwatched file, and
//     fork+exec of /bin/true, under no monitoring, the agent and auditd;
//  2. an exec storm at the highest fork+exec rate the machine reaches, with a process
//     rule matching every exec: execs performed against events in the chain and losses;
//  3. a file burst (create, write, delete N files in a watched directory): events
//     captured and monitor CPU, for the agent and for auditd;
//  4. the idle agent with 50 rules: RSS and CPU;
//  5. detection latency: the time before open() to the event's timestamp in the chain.
//
// It runs the real agent binary (make build) without a collector: the agent writes its
// chain and retries the collector in the background. It needs root (fanotify, eBPF,
// audit) and auditd/auditctl installed, and must be the only user of the audit
// subsystem while it runs: it starts its own auditd and, whatever happens, deletes every
// audit rule, stops auditd and disables auditing before it exits. Figures are printed,
// never asserted; compare ratios within one run.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// durations holds every length the program runs for.
type durations struct {
	opTime   time.Duration // one cell of the per-syscall table
	rounds   int           // per-syscall rounds; the best of them is printed
	probe    time.Duration // fork+exec rate probe
	storm    time.Duration // exec storm
	files    int           // file burst size
	idle     time.Duration // idle measurement
	reads    int           // latency samples
	readsGap time.Duration // pause between latency reads
}

// quickFlags are the values -quick gives the flags not set explicitly: a run under two
// minutes.
var quickFlags = map[string]string{"op-time": "1s", "rounds": "1", "probe": "2s", "storm": "10s",
	"files": "5000", "idle": "10s", "reads": "500", "reads-gap": "2ms"}

func main() {
	var d durations
	flag.DurationVar(&d.opTime, "op-time", 3*time.Second, "time per cell of the per-syscall table")
	flag.IntVar(&d.rounds, "rounds", 3, "per-syscall rounds (the best of them is printed)")
	flag.DurationVar(&d.probe, "probe", 5*time.Second, "fork+exec rate probe")
	flag.DurationVar(&d.storm, "storm", 60*time.Second, "exec storm")
	flag.IntVar(&d.files, "files", 50000, "files created, written and deleted in the file burst")
	flag.DurationVar(&d.idle, "idle", 60*time.Second, "idle measurement")
	flag.IntVar(&d.reads, "reads", 1000, "latency samples (reads of distinct watched files)")
	flag.DurationVar(&d.readsGap, "reads-gap", 5*time.Millisecond, "pause between latency reads")
	quick := flag.Bool("quick", false, "short durations (a run under 2 minutes) for the flags not set explicitly")
	bin := flag.String("bin", "bin", "directory with tripwire and tripwire-collector (make build)")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range quickFlags {
			if !set[name] {
				_ = flag.Set(name, v) // the values are valid for their flags
			}
		}
	}
	if err := run(d, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "bench/agent:", err)
		os.Exit(1)
	}
}

func run(d durations, bin string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (fanotify, eBPF, audit): run it with sudo")
	}
	if pid, err := auditdPID(); err != nil {
		return err
	} else if pid != 0 {
		return fmt.Errorf("auditd is already running (pid %d): this benchmark starts and stops its own", pid)
	}
	e, err := newEnv(bin)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench/agent: interrupted, cleaning up")
		e.cleanup()
		os.Exit(1)
	}()
	defer e.cleanup()

	host, _ := os.Hostname()
	fmt.Printf("tripwire agent vs auditd — %s, %s, %d CPUs, %s, load average %s\n\n",
		host, kernelRelease(), runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339), loadavg())
	steps := []func() error{
		func() error { return e.syscalls(d.opTime, d.rounds) },
		func() error { return e.execStorm(d.probe, d.storm) },
		func() error { return e.fileBurst(d.files) },
		func() error { return e.idle(d.idle) },
		func() error { return e.latency(d.reads, d.readsGap) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
		fmt.Printf("   load average after: %s\n\n", loadavg())
	}
	return nil
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux ?"
	}
	return "Linux " + string(b[:len(b)-1])
}

// loadavg is the 1, 5 and 15 minute load averages: the machine is shared.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// benchDir makes a fresh directory under the run's temp dir.
func (e *env) benchDir(name string) (string, error) {
	dir := filepath.Join(e.dir, name)
	return dir, os.MkdirAll(dir, 0o755)
}
