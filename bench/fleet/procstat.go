package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ): 100 on every
// Linux this runs on.
const clockTick = 100

// procUsage is what /proc says about a process, or about every process of a group.
type procUsage struct {
	cpuTicks uint64 // utime + stime
	rssKiB   uint64 // resident set; for a tree, the sum of its processes' PSS
}

// readProc reads the CPU ticks and resident set of one process.
func readProc(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, err
	}
	f, err := statFields(stat)
	if err != nil {
		return procUsage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	u := procUsage{cpuTicks: f.utime + f.stime}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, err
	}
	u.rssKiB = kiB(status, "VmRSS:")
	return u, nil
}

// readPSS reads a process's proportional set size: its resident pages, each shared
// page divided among the processes sharing it (PostgreSQL's backends share its buffers,
// which RSS would count once per backend).
func readPSS(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	return kiB(data, "Pss:"), nil
}

// kiB reads the "Key:   123 kB" line of a /proc file.
func kiB(data []byte, key string) uint64 {
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// readTree sums readProc over a process and its children: a PostgreSQL server is its
// postmaster and one backend per connection (each in a session of its own, so the
// process group does not find them).
func readTree(pid int) (procUsage, error) {
	sum, err := readProc(pid)
	if err != nil {
		return sum, err
	}
	if sum.rssKiB, err = readPSS(pid); err != nil {
		return sum, err
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return procUsage{}, err
	}
	for _, d := range dirs {
		child, _ := strconv.Atoi(filepath.Base(d))
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		f, err := statFields(stat)
		if err != nil || f.ppid != pid {
			continue
		}
		u, err := readProc(child)
		if err != nil {
			continue
		}
		pss, err := readPSS(child)
		if err != nil {
			continue
		}
		sum.cpuTicks += u.cpuTicks
		sum.rssKiB += pss
	}
	return sum, nil
}

type statFieldsT struct {
	ppid         int
	utime, stime uint64
}

// statFields parses the fields of /proc/<pid>/stat after the command name, which may
// hold spaces and parentheses: it ends at the last ')'.
func statFields(stat []byte) (statFieldsT, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return statFieldsT{}, fmt.Errorf("no command name")
	}
	// Fields from 3 (state) on: ppid is field 4, utime 14, stime 15.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return statFieldsT{}, fmt.Errorf("%d fields", len(f)+2)
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return statFieldsT{}, fmt.Errorf("unparsable fields")
	}
	return statFieldsT{ppid: ppid, utime: ut, stime: st}, nil
}

// watched is a process (with its children, if tree) whose CPU and memory are sampled.
type watched struct {
	name string
	pid  int
	tree bool
}

func (w watched) read() (procUsage, error) {
	if w.tree {
		return readTree(w.pid)
	}
	return readProc(w.pid)
}

// usage is what a sampler measured of one process over a window.
type usage struct {
	name       string
	memory     string  // "RSS", or "PSS" summed over a tree
	cpuPercent float64 // of one core, averaged over the window
	rssAvgMiB  float64
	rssMaxMiB  float64
}

// sampler samples watched processes every second between start and stop.
type sampler struct {
	procs   []watched
	stop    chan struct{}
	done    chan []usage
	started time.Time
	// machineBusy is the share of all the machine's CPU time that was busy over the
	// window, in cores (set by finish).
	machineBusy float64
}

func startSampler(procs ...watched) *sampler {
	s := &sampler{procs: procs, stop: make(chan struct{}), done: make(chan []usage, 1), started: time.Now()}
	busy0, total0, _ := machineTicks()
	first := make([]procUsage, len(procs))
	for i, p := range procs {
		first[i], _ = p.read()
	}
	go func() {
		rssSum := make([]float64, len(procs))
		rssMax := make([]float64, len(procs))
		last := slices.Clone(first)
		n := 0
		t := time.NewTicker(time.Second)
		defer t.Stop()
		sample := func() {
			n++
			for i, p := range procs {
				u, err := p.read()
				if err != nil {
					continue
				}
				last[i] = u
				mib := float64(u.rssKiB) / 1024
				rssSum[i] += mib
				rssMax[i] = max(rssMax[i], mib)
			}
		}
		for {
			select {
			case <-t.C:
				sample()
			case <-s.stop:
				sample()
				wall := time.Since(s.started).Seconds()
				if busy1, total1, err := machineTicks(); err == nil && total1 > total0 {
					s.machineBusy = float64(busy1-busy0) / float64(total1-total0) * float64(runtime.NumCPU())
				}
				out := make([]usage, len(procs))
				for i, p := range procs {
					out[i] = usage{
						name:       p.name,
						memory:     map[bool]string{false: "RSS", true: "PSS"}[p.tree],
						cpuPercent: float64(last[i].cpuTicks-first[i].cpuTicks) / clockTick / wall * 100,
						rssAvgMiB:  rssSum[i] / float64(n),
						rssMaxMiB:  rssMax[i],
					}
				}
				s.done <- out
				return
			}
		}
	}()
	return s
}

// finish stops sampling and returns the figures.
func (s *sampler) finish() []usage {
	close(s.stop)
	return <-s.done
}

// machineTicks reads the busy and total CPU ticks of the whole machine (/proc/stat):
// the VM is shared, so a run says how busy it was besides the processes measured.
func machineTicks() (busy, total uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
