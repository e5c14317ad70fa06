package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	agentconfig "github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/storage"
)

// rulesCmd keeps the central rules through the API: apply replaces them with a file's
// (PUT /api/v1/rules), list prints them (GET /api/v1/rules).
func rulesCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError("rules needs a subcommand: apply or list")
	}
	fs := flag.NewFlagSet("rules "+args[0], flag.ContinueOnError)
	client := apiFlags(fs, "rules "+args[0])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "apply":
		file := fs.String("f", "", "the rules file: a top-level rules: list in the agent's rule syntax, each with an optional host: (required)")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError(err.Error())
		}
		if *file == "" || fs.NArg() > 0 {
			return usageError("rules apply: -f FILE is required")
		}
		c, err := client()
		if err != nil {
			return err
		}
		return applyRules(ctx, c, *file, stdout)
	case "list":
		host := fs.String("host", "", "only the rules that apply to this host (the global ones and its own)")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError(err.Error())
		}
		c, err := client()
		if err != nil {
			return err
		}
		return listRules(ctx, c, *host, stdout)
	}
	return usageError(fmt.Sprintf("unknown rules command %q", args[0]))
}

// applyRules validates the file as the agent validates rules, replaces the central
// rules with it, and prints what was added, changed and removed.
func applyRules(ctx context.Context, c *apiClient, file string, out io.Writer) error {
	rules, err := agentconfig.LoadRules(file)
	if err != nil {
		return err
	}
	var changes storage.RuleChanges
	if err := c.doJSON(ctx, http.MethodPut, "/api/v1/rules", map[string]any{"rules": rules}, &changes); err != nil {
		return fmt.Errorf("applying %s: %w", file, err)
	}
	for _, l := range []struct {
		sign string
		keys []storage.RuleKey
	}{{"+ added  ", changes.Added}, {"~ changed", changes.Changed}, {"- removed", changes.Removed}} {
		for _, k := range l.keys {
			fmt.Fprintf(out, "%s %s\n", l.sign, ruleName(k))
		}
	}
	fmt.Fprintf(out, "%d rules applied from %s: %d added, %d changed, %d removed\n",
		len(rules), file, len(changes.Added), len(changes.Changed), len(changes.Removed))
	return nil
}

// ruleName names a rule with its scope: "passwd (all hosts)" or "decoy (host web-01)".
func ruleName(k storage.RuleKey) string {
	if k.Host == "" {
		return k.Name + " (all hosts)"
	}
	return k.Name + " (host " + k.Host + ")"
}

func listRules(ctx context.Context, c *apiClient, host string, out io.Writer) error {
	var body struct {
		Rules []struct {
			Name      string    `json:"name"`
			Host      string    `json:"host"`
			Type      string    `json:"type"`
			Severity  string    `json:"severity"`
			Paths     []string  `json:"paths"`
			Names     []string  `json:"names"`
			Ports     []int     `json:"ports"`
			UpdatedAt time.Time `json:"updated_at"`
		} `json:"rules"`
	}
	if err := c.doJSON(ctx, http.MethodGet, "/api/v1/rules?"+url.Values{"host": {host}}.Encode(), nil, &body); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNAME\tTYPE\tSEVERITY\tWATCHES\tUPDATED")
	for _, r := range body.Rules {
		scope := r.Host
		if scope == "" {
			scope = "*"
		}
		watches := strings.Join(r.Paths, ",")
		if len(r.Names) > 0 {
			watches = strings.Join(append(r.Names, r.Paths...), ",")
		}
		if len(r.Ports) > 0 {
			watches = "ports " + strings.Trim(fmt.Sprint(r.Ports), "[]")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", scope, r.Name, r.Type, r.Severity, watches, r.UpdatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}
