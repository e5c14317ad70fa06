// Command tripwire-collector receives agents' audit chains over gRPC with mutual TLS,
// stores them, and serves the query API. Subcommands: serve, migrate, pki, alerts, sql,
// rules.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tripwire-project/tripwire/collector/config"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/collector/server"
	"github.com/tripwire-project/tripwire/internal/version"
)

const usage = `usage: tripwire-collector <command> [flags]

commands:
  serve  --config collector.yaml          run the collector (migrates the store's schema first)
  migrate --config collector.yaml         bring the configured store's schema up to date, and exit
  pki init  --dir DIR [--server-name N]   create a CA and the collector's server certificate
  pki token --host NAME [--ttl 1h] [--collector ADDR]
                                          make a one-time join token for listen.enroll and print the
                                          tripwire enroll command that uses it (new host id; the
                                          host makes its own key); --list shows every token made
  pki issue --dir DIR --host NAME [--new-host-id] [--validity 720h]
                                          issue an agent certificate (DIR/NAME/agent.crt, agent.key, ca.crt);
                                          re-issuing keeps the host id unless --new-host-id
  pki revoke --host NAME [--cert FILE] [--reason R]
                                          refuse the host's certificate from its next message on
  alerts [--follow] [--url U] [--token T] list alerts, or follow them live as they arrive
  sql [--format table|ndjson] [--max-rows N] "SELECT ..."
                                          run one read-only SQL query over the store, through the API
  rules apply -f rules.yaml               replace the central rules with the file's; prints what changed
  rules list [--host H]                   list the central rules
                                          (alerts, sql, rules, pki token and pki revoke take
                                          --config collector.yaml, --url, --token)
  version                                 print the version
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tripwire-collector:", err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("a command is required")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "migrate":
		return migrate(args[1:], stdout, stderr)
	case "pki":
		return pkiCmd(args[1:], stdout)
	case "alerts":
		return alertsCmd(args[1:], stdout)
	case "sql":
		return sqlCmd(args[1:], stdout)
	case "rules":
		return rulesCmd(args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, version.Version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError(fmt.Sprintf("unknown command %q", args[0]))
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "collector.yaml", "path to collector.yaml")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError(fmt.Sprintf("--log-level: %v", err))
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := srv.ReloadTLS(); err != nil {
				logger.Error("reloading TLS certificates", "err", err)
			} else {
				logger.Info("reloaded TLS certificates")
			}
		}
	}()
	return srv.Run(ctx)
}

// migrate applies the store's pending schema migrations (serve does too, at start): to
// migrate before rolling out collectors, or to check that a configured store is
// reachable.
func migrate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfgPath := fs.String("config", "collector.yaml", "path to collector.yaml")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	store, err := server.OpenStore(ctx, cfg.Storage, logger, nil)
	if err != nil {
		return err
	}
	if err := store.Close(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "store schema is up to date")
	return nil
}

func pkiCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError("pki needs a subcommand: init, token, issue or revoke")
	}
	switch args[0] {
	case "revoke":
		return revokeCmd(args[1:], stdout)
	case "token":
		return tokenCmd(args[1:], stdout)
	}
	fs := flag.NewFlagSet("pki "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "pki", "PKI directory")
	switch args[0] {
	case "init":
		var names stringList
		fs.Var(&names, "server-name", "a DNS name or IP for the collector's certificate (repeatable; default localhost, 127.0.0.1, ::1 and the host name)")
		force := fs.Bool("force", false, "replace an existing CA (every issued certificate stops working)")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError(err.Error())
		}
		if err := pki.Init(*dir, pki.InitOptions{ServerNames: names, Force: *force}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created CA and collector certificate in %s\n", *dir)
		return nil
	case "issue":
		host := fs.String("host", "", "the host's name (required)")
		newID := fs.Bool("new-host-id", false, "give the host a new id (a fresh chain) instead of keeping the one in its existing certificate")
		validity := fs.Duration("validity", 0, "how long the certificate is valid, e.g. 720h (default 1 year)")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError(err.Error())
		}
		if *host == "" {
			return usageError("pki issue: --host is required")
		}
		hc, err := pki.Issue(*dir, *host, pki.IssueOptions{NewHostID: *newID, Validity: *validity})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "issued certificate for host %s (host id %s) in %s\n", *host, hc.HostID, hc.Dir)
		return nil
	}
	return usageError(fmt.Sprintf("unknown pki command %q", args[0]))
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
