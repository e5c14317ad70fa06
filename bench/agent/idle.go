package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// idle starts the agent with 50 rules — 20 file, 20 process, 10 network monitor — and
// prints its RSS and CPU over d of doing nothing.
func (e *env) idle(d time.Duration) error {
	dir, err := e.benchDir("idle")
	if err != nil {
		return err
	}
	var rules []string
	for i := range 20 {
		p := filepath.Join(dir, fmt.Sprintf("decoy-%02d", i))
		if err := os.WriteFile(p, []byte("decoy\n"), 0o644); err != nil {
			return err
		}
		rules = append(rules, fmt.Sprintf("{name: file-%02d, type: file, paths: [%s], severity: CRITICAL}", i, p))
		rules = append(rules, fmt.Sprintf("{name: proc-%02d, type: process, names: [bench-idle-%02d], severity: WARN}", i, i))
	}
	for i := range 10 {
		rules = append(rules, fmt.Sprintf("{name: net-%02d, type: network, ports: [%d], severity: WARN}", i, 47100+i))
	}
	a, err := e.startAgent("idle", rules...)
	if err != nil {
		return err
	}
	defer e.stopAgent(a)
	time.Sleep(5 * time.Second) // start-up work done
	cpu0, err := cpuTime(a.pid())
	if err != nil {
		return err
	}
	time.Sleep(d)
	cpu1, err := cpuTime(a.pid())
	if err != nil {
		return err
	}
	rss, hwm, err := memKB(a.pid())
	if err != nil {
		return err
	}
	fmt.Printf("4. idle agent, %d rules (20 file, 20 process, 10 network monitor), %s after a 5 s settle\n", len(rules), d)
	fmt.Printf("   RSS (VmRSS)            %7.1f MB   (goal < 20 MB)\n", float64(rss)/1024)
	fmt.Printf("   peak RSS (VmHWM)       %7.1f MB\n", float64(hwm)/1024)
	fmt.Printf("   CPU                    %7.3f %% of one core (%s in %s; goal < 0.1%%)\n",
		100*(cpu1-cpu0).Seconds()/d.Seconds(), cpu1-cpu0, d)
	return nil
}
