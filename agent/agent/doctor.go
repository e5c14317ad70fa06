package agent

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/tripwire-project/tripwire/agent/caps"
	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/agent/sigwatch"
	"github.com/tripwire-project/tripwire/internal/version"
)

// bestModes lists each watcher's modes, best first, as caps.Requirements names them.
var bestModes = map[string][]string{
	"file":    {"fanotify", "fsnotify"},
	"process": {"ebpf", "netlink", "proc"},
	"network": {"ebpf", "sockdiag"},
	"signals": {"ebpf", "none"},
}

// DoctorReport is what `tripwire doctor` found.
type DoctorReport struct {
	Kernel   string
	Platform string
	Caps     map[string]bool
	BTF      bool
	Watchers []DoctorWatcher
}

// DoctorWatcher is one watcher as it would run here.
type DoctorWatcher struct {
	Name, Mode, Degraded string
	// Missing are the capabilities that would enable a better mode than Mode, with the
	// mode they would enable.
	Missing []caps.Need
	Better  string
	Err     string // the watcher could not start at all
}

// Degraded says some watcher runs below its best mode or not at all.
func (r DoctorReport) Degraded() bool {
	return slices.ContainsFunc(r.Watchers, func(w DoctorWatcher) bool { return w.Err != "" || w.Better != "" || w.Degraded != "" })
}

// Doctor starts every watcher as the agent would with cfg's rules (or one probe rule
// per watcher when cfg is nil), notes the mode each gets, closes them, and names the
// capability that would enable each better mode. Decoy listeners are not opened: a
// running agent holds their ports.
func Doctor() (DoctorReport, error) { return DoctorWith(nil) }

// DoctorWith is Doctor for a given config.
func DoctorWith(cfg *config.Config) (DoctorReport, error) {
	held, err := caps.Effective()
	if err != nil {
		return DoctorReport{}, err
	}
	r := DoctorReport{Kernel: caps.KernelRelease(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Caps: held}
	_, err = os.Stat("/sys/kernel/btf/vmlinux")
	r.BTF = err == nil
	probe := probeConfig(cfg)
	logger := slog.New(slog.DiscardHandler)
	for _, typ := range []string{config.TypeFile, config.TypeProcess, config.TypeNetwork} {
		one := *probe
		one.Rules = slices.DeleteFunc(slices.Clone(probe.Rules), func(rule config.Rule) bool { return rule.Type != typ })
		if len(one.Rules) == 0 {
			continue
		}
		dw := DoctorWatcher{Name: typ}
		ws, err := newWatchers(&one, logger)
		if err != nil {
			dw.Err = err.Error()
		}
		for _, w := range ws {
			dw.Mode, dw.Degraded = w.Mode(), w.Degraded()
			w.Close()
		}
		r.Watchers = append(r.Watchers, r.explain(dw))
	}
	dw := DoctorWatcher{Name: "signals", Mode: "ebpf"}
	pin := filepath.Join("/sys/fs/bpf", fmt.Sprintf("tripwire-doctor-%d", os.Getpid()))
	if s, err := sigwatch.Start(os.Getpid(), pin); err != nil {
		dw.Mode, dw.Degraded = "none", err.Error()
	} else {
		s.Close()
		os.RemoveAll(pin)
	}
	r.Watchers = append(r.Watchers, r.explain(dw))
	return r, nil
}

// explain fills in the better mode a watcher could have and what it lacks for it.
func (r DoctorReport) explain(w DoctorWatcher) DoctorWatcher {
	for _, mode := range bestModes[w.Name] {
		if mode == w.Mode {
			break
		}
		for _, req := range caps.Requirements {
			if req.Watcher == w.Name && req.Mode == mode {
				if missing := req.Missing(r.Caps); len(missing) > 0 || w.Mode == "" {
					w.Better, w.Missing = mode, missing
				}
			}
		}
		if w.Better != "" {
			break
		}
	}
	return w
}

// probeConfig is cfg's rules without decoys, or one probe rule per watcher.
func probeConfig(cfg *config.Config) *config.Config {
	if cfg != nil {
		out := *cfg
		out.Rules = slices.DeleteFunc(slices.Clone(cfg.Rules), func(r config.Rule) bool { return r.Mode == config.NetModeDecoy })
		return &out
	}
	return &config.Config{
		Watchers: config.Watchers{File: config.WatcherMode{Mode: "auto"}, Process: config.WatcherMode{Mode: "auto"}, Network: config.WatcherMode{Mode: "auto"}},
		Rules: []config.Rule{
			{Name: "doctor-file", Type: config.TypeFile, Severity: "INFO", Paths: []string{os.TempDir()}},
			{Name: "doctor-process", Type: config.TypeProcess, Severity: "INFO", Names: []string{"tripwire-doctor-probe"}},
			{Name: "doctor-network", Type: config.TypeNetwork, Severity: "INFO", Ports: []int{1}, Mode: config.NetModeMonitor, Direction: config.DirectionInbound},
		},
	}
}

// Print writes the report for an operator.
func (r DoctorReport) Print(w io.Writer) {
	fmt.Fprintf(w, "tripwire %s on %s, kernel %s, BTF %s\n", version.Version, r.Platform, r.Kernel, map[bool]string{true: "present", false: "absent"}[r.BTF])
	var have, lack []string
	for _, c := range caps.All() {
		if r.Caps[c] {
			have = append(have, c)
		} else {
			lack = append(lack, c)
		}
	}
	fmt.Fprintf(w, "capabilities held: %s\n", orNone(have))
	fmt.Fprintf(w, "capabilities not held: %s\n", orNone(lack))
	for _, d := range r.Watchers {
		switch {
		case d.Err != "":
			fmt.Fprintf(w, "%-8s FAILED: %s\n", d.Name, d.Err)
		default:
			fmt.Fprintf(w, "%-8s mode %s\n", d.Name, d.Mode)
		}
		if d.Degraded != "" {
			fmt.Fprintf(w, "         degraded: %s\n", d.Degraded)
		}
		if d.Better != "" {
			for _, n := range d.Missing {
				fmt.Fprintf(w, "         %s would enable mode %s (%s)\n", n.Cap, d.Better, n.Why)
			}
			if len(d.Missing) == 0 {
				fmt.Fprintf(w, "         mode %s has every capability it needs but failed: see the degraded reason\n", d.Better)
			}
		}
	}
	if r.Degraded() {
		fmt.Fprintln(w, "status: degraded")
	} else {
		fmt.Fprintln(w, "status: ok, every watcher in its best mode")
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
