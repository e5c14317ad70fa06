package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// execStorm finds the highest fork+exec rate of /bin/true (no monitoring), then runs at
// that rate for d under the agent with a process rule matching every exec, and prints
// execs performed against events recorded, and every loss the agent accounted.
func (e *env) execStorm(probe, d time.Duration) error {
	workers := 2 * runtime.NumCPU()
	probed, _, err := forkExecAt(0, workers, probe)
	if err != nil {
		return err
	}
	rate := float64(probed) / probe.Seconds()

	a, err := e.startAgent("storm", "{name: storm-true, type: process, names: [true], severity: INFO}")
	if err != nil {
		return err
	}
	performed, elapsed, err := forkExecAt(rate, workers, d)
	if err != nil {
		e.stopAgent(a)
		return err
	}
	if _, err := a.settle(`tripwire_agent_events_total{type="PROCESS"}`, 2*time.Second, time.Minute); err != nil {
		e.stopAgent(a)
		return err
	}
	lostMetric, err := a.metric("tripwire_agent_events_lost_total")
	e.stopAgent(a)
	if err != nil {
		return err
	}
	payloads, err := readChain(a.auditDir)
	if err != nil {
		return err
	}
	recorded := 0
	for _, p := range payloads {
		// The execs are this process's children; pids wrap (pid_max may be 32768), so
		// they are told apart by parent, not by pid.
		if p.Kind == chain.KindEvent && p.Event.Rule == "storm-true" && p.Event.PPID == int32(os.Getpid()) {
			recorded++
		}
	}
	fmt.Printf("2. exec storm: fork+exec of /bin/true, %d workers, a process rule matching `true`\n", workers)
	fmt.Printf("   highest rate, no monitoring (%s)      %8.0f execs/s\n", probe, rate)
	fmt.Printf("   run at that rate under tripwire (%s)  %8d execs (%.0f/s achieved)\n", d, performed, float64(performed)/elapsed.Seconds())
	fmt.Printf("   events recorded in the chain          %8d (%d missing)\n", recorded, performed-recorded)
	fmt.Printf("   lost, chain gap entries (notice.lost) %8d\n", gapsLost(payloads))
	fmt.Printf("   lost, tripwire_agent_events_lost_total %7.0f   (goal 0, and every loss counted)\n", lostMetric)
	return nil
}

// forkExecAt runs fork+exec of /bin/true on workers goroutines for d, at rate per
// second in total (0: as fast as they go), and returns how many ran and for how long.
func forkExecAt(rate float64, workers int, d time.Duration) (int, time.Duration, error) {
	var tokens chan struct{}
	start := time.Now()
	stop := start.Add(d)
	if rate > 0 {
		tokens = make(chan struct{}, workers)
		go pace(tokens, rate, start, stop)
	}
	var (
		done     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if tokens != nil {
					if _, ok := <-tokens; !ok {
						return
					}
				} else if time.Now().After(stop) {
					return
				}
				if _, err := forkExec(); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(done.Load()), time.Since(start), firstErr
}

// pace offers rate tokens per second on tokens from start until stop, then closes it. A
// token the workers are too busy to take is dropped, so a rate the machine cannot hold
// shows as fewer execs, not as a burst later.
func pace(tokens chan<- struct{}, rate float64, start, stop time.Time) {
	defer close(tokens)
	sent := 0
	for now := time.Now(); now.Before(stop); now = time.Now() {
		due := int(now.Sub(start).Seconds() * rate)
		for ; sent < due; sent++ {
			select {
			case tokens <- struct{}{}:
			default:
			}
		}
		time.Sleep(time.Millisecond)
	}
}
