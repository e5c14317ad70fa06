package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tripwire-project/tripwire/agent/watcher"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// latency reads n distinct files of a watched directory, gap apart, and prints the
// time from just before each open() to the event's timestamp in the chain, which the
// pipeline stamps when it takes the event. Distinct files, because the agent reports
// one process's repeated reads of one file once per 5 s burst window.
func (e *env) latency(n int, gap time.Duration) error {
	dir, err := e.benchDir("latency")
	if err != nil {
		return err
	}
	name := func(i int) string { return filepath.Join(dir, fmt.Sprintf("f%05d", i)) }
	for i := range n {
		if err := os.WriteFile(name(i), []byte("decoy\n"), 0o644); err != nil {
			return err
		}
	}
	a, err := e.startAgent("latency", fmt.Sprintf("{name: latency, type: file, paths: [%s], severity: CRITICAL}", dir))
	if err != nil {
		return err
	}
	defer e.stopAgent(a)
	before := make(map[string]time.Time, n)
	buf := make([]byte, 64)
	for i := range n {
		before[name(i)] = time.Now()
		if err := openRead(name(i), buf); err != nil {
			return err
		}
		time.Sleep(gap)
	}
	if _, err := a.settle(`tripwire_agent_events_total{type="FILE"}`, time.Second, time.Minute); err != nil {
		return err
	}
	e.stopAgent(a)
	payloads, err := readChain(a.auditDir)
	if err != nil {
		return err
	}
	var lat []time.Duration
	for _, p := range payloads {
		if p.Kind != chain.KindEvent || p.Event.Rule != "latency" || p.Event.Op != watcher.OpRead {
			continue
		}
		if t0, ok := before[p.Event.Path]; ok {
			lat = append(lat, p.Time.Sub(t0))
			delete(before, p.Event.Path)
		}
	}
	if len(lat) == 0 {
		return fmt.Errorf("latency: none of the %d reads is in the chain", n)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		return lat[min(len(lat)-1, int(float64(len(lat))*p))].Round(time.Microsecond)
	}
	fmt.Printf("5. detection latency: time before open() → event ts in the chain, %d reads of distinct watched files, %s apart\n", n, gap)
	fmt.Printf("   p50 %s   p99 %s   max %s   (%d of %d reads in the chain)\n", pct(0.50), pct(0.99), lat[len(lat)-1].Round(time.Microsecond), len(lat), n)
	return nil
}
