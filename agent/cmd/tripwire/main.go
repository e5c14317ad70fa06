// Command tripwire is the host agent: it sets file tripwires, writes every hit into a
// hash-chained audit log, and ships the log to a collector over mutual TLS.
// Subcommands: start, enroll, audit verify, doctor, version.
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

	"github.com/tripwire-project/tripwire/agent/agent"
	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/agent/config"
	"github.com/tripwire-project/tripwire/internal/version"
)

const usage = `usage: tripwire <command> [flags]

commands:
  start --config config.yaml     run the agent
  enroll --collector ADDR --token T [--dir /etc/tripwire/pki] [--force] [--server-name N] [--ingest ADDR]
                                 make this host's key and trade a one-time join token
                                 (tripwire-collector pki token) for its certificate at the
                                 collector's enrolment address; writes DIR/ca.crt, agent.crt,
                                 agent.key and prints the config.yaml lines that use them
                                 (the token may come from $TRIPWIRE_JOIN_TOKEN instead)
  audit verify --dir DIR         verify an audit chain; prints the first bad seq and exits 1
  doctor [--config config.yaml]  show the kernel, each watcher's mode and the capability
                                 that would enable a better one; exits 1 when degraded
  version                        print the version
`

type usageError string

func (e usageError) Error() string { return string(e) }

func main() {
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "tripwire:", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return 1
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("a command is required")
	}
	switch args[0] {
	case "start":
		return start(args[1:], stderr)
	case "enroll":
		return enrollCmd(args[1:], stdout)
	case "audit":
		if len(args) < 2 || args[1] != "verify" {
			return usageError("audit needs a subcommand: verify")
		}
		return verify(args[2:], stdout)
	case "doctor":
		return doctor(args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, version.Version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError(fmt.Sprintf("unknown command %q", args[0]))
}

func start(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	cfgPath := fs.String("config", "/etc/tripwire/config.yaml", "path to config.yaml")
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
	a, err := agent.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := a.ReloadTLS(); err != nil {
				logger.Error("reloading agent certificate", "err", err)
			} else {
				logger.Info("reloaded agent certificate")
			}
		}
	}()
	logger.Info("agent started", "host", cfg.Host, "healthz", a.HealthzAddr(), "version", version.Version)
	return a.Run(ctx)
}

func verify(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dir := fs.String("dir", "/var/lib/tripwire/audit", "the audit directory")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	rep, err := audit.Verify(*dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: %d entries in %d segments verify; last seq %d, hash %s\n", rep.Entries, rep.Segments, rep.LastSeq, rep.LastHash)
	return nil
}

func doctor(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "check the watchers this config needs (default: one probe rule per watcher)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	var cfg *config.Config
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	rep, err := agent.DoctorWith(cfg)
	if err != nil {
		return err
	}
	rep.Print(stdout)
	if rep.Degraded() {
		return errors.New("degraded: see above")
	}
	return nil
}
