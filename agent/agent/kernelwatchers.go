package agent

import (
	"fmt"
	"log/slog"

	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/agent/netwatch"
	"github.com/tripwire-project/tripwire/agent/procwatch"
)

// newKernelWatchers starts the process watcher for process rules and the network
// watcher for network rules, each only when the config has such rules.
func newKernelWatchers(cfg *config.Config, logger *slog.Logger) ([]*namedWatcher, error) {
	var (
		procs []procwatch.Rule
		nets  []netwatch.Rule
	)
	for _, r := range cfg.Rules {
		switch r.Type {
		case config.TypeProcess:
			procs = append(procs, procwatch.Rule{
				Name: r.Name, Severity: r.Severity, Names: r.Names, Paths: r.Paths,
				Cmdline: r.Cmdline, CmdlineRegex: r.CmdlineRegexps(), MatchContent: r.MatchContent,
			})
		case config.TypeNetwork:
			ports := make([]uint16, len(r.Ports))
			for i, p := range r.Ports {
				ports[i] = uint16(p) // config.Load checked 1..65535
			}
			nets = append(nets, netwatch.Rule{
				Name: r.Name, Severity: r.Severity, Ports: ports, Mode: r.Mode, Direction: r.Direction, Address: r.Address,
			})
		}
	}
	var out []*namedWatcher
	if len(procs) > 0 {
		w, err := procwatch.New(procs, procwatch.Options{ForceMode: autoMode(cfg.Watchers.Process.Mode), Logger: logger.With("component", "process-watcher")})
		if err != nil {
			return nil, fmt.Errorf("starting process watcher: %w", err)
		}
		out = append(out, &namedWatcher{eventWatcher: w, name: "process"})
	}
	if len(nets) > 0 {
		w, err := netwatch.New(nets, netwatch.Options{ForceMode: autoMode(cfg.Watchers.Network.Mode), Logger: logger.With("component", "network-watcher")})
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("starting network watcher: %w", err)
		}
		out = append(out, &namedWatcher{eventWatcher: w, name: "network"})
	}
	return out, nil
}
