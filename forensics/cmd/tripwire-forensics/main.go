// Command tripwire-forensics works on audit evidence away from the fleet. Today it
// verifies an agent's audit segment directory (a host seized offline) without trusting
// the host: every hash is recomputed and the first break is named. Export to DuckDB
// follows (docs/formats/audit-chain.md describes the format it reads).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/internal/version"
)

const usage = `usage: tripwire-forensics <command> [flags]

commands:
  verify --dir DIR   verify an audit segment directory; prints the first break and exits 1
  version            print the version
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tripwire-forensics:", err)
		if errors.Is(err, errUsage) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("a command is required: %w", errUsage)
	}
	switch args[0] {
	case "verify":
		fs := flag.NewFlagSet("verify", flag.ContinueOnError)
		dir := fs.String("dir", "", "audit segment directory (required)")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%v: %w", err, errUsage)
		}
		if *dir == "" {
			return fmt.Errorf("verify: --dir is required: %w", errUsage)
		}
		rep, err := audit.Verify(*dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ok: %d entries in %d segments verify; last seq %d, hash %s\n", rep.Entries, rep.Segments, rep.LastSeq, rep.LastHash)
		return nil
	case "version":
		fmt.Fprintln(stdout, version.Version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}
