// Command tripwire-forensics works on audit evidence away from the fleet, without
// trusting the hosts it came from: it verifies an agent's audit segment directory (a
// host seized offline), exports chains from such a directory or from the collector's
// embedded DuckDB file as a SQL script for the duckdb shell (or NDJSON, or Parquet),
// verifies such exports, and runs SQL on them with an embedded DuckDB for machines
// without the duckdb shell. docs/formats/forensics-export.md describes the export.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/collector/config"
	"github.com/tripwire-project/tripwire/collector/server"
	"github.com/tripwire-project/tripwire/forensics"
	"github.com/tripwire-project/tripwire/internal/version"
)

const usage = `usage: tripwire-forensics <command> [flags]

commands:
  export (--dir DIR | --duckdb FILE | --config collector.yaml) [--host H] [--from T] [--to T] [--type FILE|NETWORK|PROCESS]
         [--rule R] [--format sql|ndjson|parquet] [--out FILE]
                     export chains; the default is a SQL script on stdout for the duckdb shell:
                     tripwire-forensics export --dir /var/lib/tripwire/audit | duckdb case.db
                     --config reads the store that collector.yaml names (ClickHouse + PostgreSQL
                     while collectors run; an embedded DuckDB file only once its collector stopped)
  verify --dir DIR   verify an audit segment directory; prints the first break and exits 1
  verify --export FILE
                     verify an export (SQL script, NDJSON or Parquet) with DuckDB's own sha256
  sql --export FILE [--query Q | --file Q.sql] [--set NAME=VALUE]...
                     load an export into an embedded DuckDB and print the results of queries
                     (sql/forensics holds canned ones; --set sets a getvariable() parameter)
  version            print the version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tripwire-forensics:", err)
		if errors.Is(err, errUsage) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("a command is required: %w", errUsage)
	}
	switch args[0] {
	case "export":
		return runExport(ctx, args[1:], stdout, stderr)
	case "verify":
		return runVerify(ctx, args[1:], stdout)
	case "sql":
		return runSQL(ctx, args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, version.Version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %v: %w", fs.Name(), err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q: %w", fs.Name(), fs.Arg(0), errUsage)
	}
	return nil
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	dir := fs.String("dir", "", "audit segment directory of a host (read as it lies; never modified)")
	db := fs.String("duckdb", "", "the collector's embedded DuckDB file (opened read-only; stop the collector first)")
	collectorCfg := fs.String("config", "", "a collector.yaml: export from the store it names (e.g. ClickHouse + PostgreSQL)")
	host := fs.String("host", "", "host id or name to export (with --dir: the host id to record, default \"local\")")
	from := fs.String("from", "", "export payloads of entries at or after this time (RFC 3339)")
	to := fs.String("to", "", "export payloads of entries before this time (RFC 3339)")
	typ := fs.String("type", "", "export payloads of events of this type only: FILE, NETWORK or PROCESS")
	rule := fs.String("rule", "", "export payloads of events of this rule only")
	format := fs.String("format", "sql", "sql, ndjson or parquet (parquet needs --out)")
	out := fs.String("out", "", "output file (default stdout)")
	tmp := fs.String("tmp", "", "directory for temporary files (parquet; default the system's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if n := countSet(*dir, *db, *collectorCfg); n != 1 {
		return fmt.Errorf("export: exactly one of --dir, --duckdb and --config is required: %w", errUsage)
	}
	f, err := forensics.ParseFormat(*format)
	if err != nil {
		return fmt.Errorf("export: %v: %w", err, errUsage)
	}
	filter := forensics.Filter{Host: *host, Type: *typ, Rule: *rule}
	switch filter.Type {
	case "", "FILE", "NETWORK", "PROCESS":
	default:
		return fmt.Errorf("export: --type %q is not one of FILE, NETWORK, PROCESS: %w", filter.Type, errUsage)
	}
	for _, t := range []struct {
		flag, v string
		dst     *time.Time
	}{{"from", *from, &filter.From}, {"to", *to, &filter.To}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.v)
		if err != nil {
			return fmt.Errorf("export: --%s %q is not an RFC 3339 time: %w", t.flag, t.v, errUsage)
		}
		*t.dst = v
	}

	var src forensics.Source
	if *dir != "" {
		// The directory records no host id: --host names the chain rather than filters.
		src, err = forensics.NewDirSource(*dir, *host)
		filter.Host = ""
	} else if *db != "" {
		src, err = forensics.NewDuckDBSource(*db)
	} else {
		src, err = storeSource(ctx, *collectorCfg)
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer src.Close()
	opts := forensics.Options{Filter: filter, Format: f, Version: version.Version}

	var sum forensics.Summary
	if f == forensics.FormatParquet {
		sum, err = forensics.ExportParquet(ctx, src, *out, opts, *tmp)
	} else {
		w := stdout
		var file *os.File
		if *out != "" && *out != "-" {
			if file, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			w = file
		}
		sum, err = forensics.Export(ctx, src, w, opts)
		if file != nil {
			if cerr := file.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("export: closing %s: %w", *out, cerr)
			}
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d entries of %d host(s), %d with payload, %d stubs outside the filter\n",
		sum.Entries, sum.Hosts, sum.InFilter, sum.Entries-sum.InFilter)
	for _, n := range sum.Notes {
		fmt.Fprintln(stderr, "note:", n)
	}
	return nil
}

func runVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	dir := fs.String("dir", "", "audit segment directory")
	export := fs.String("export", "", "an export: SQL script, NDJSON or Parquet")
	tmp := fs.String("tmp", "", "directory for the scratch database (default the system's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*dir == "") == (*export == "") {
		return fmt.Errorf("verify: exactly one of --dir and --export is required: %w", errUsage)
	}
	if *dir != "" {
		rep, err := audit.Verify(*dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ok: %d entries in %d segments verify; last seq %d, hash %s\n", rep.Entries, rep.Segments, rep.LastSeq, rep.LastHash)
		return nil
	}
	rep, err := forensics.VerifyExport(ctx, *export, *tmp)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: %d entries of %d host(s) verify in DuckDB: %d hashes recomputed, %d stubs checked by link\n",
		rep.Entries, rep.Hosts, rep.Hashed, rep.Stubs)
	return nil
}

// setFlags collects repeated --set NAME=VALUE flags.
type setFlags [][2]string

func (s *setFlags) String() string { return fmt.Sprint(*s) }

func (s *setFlags) Set(v string) error {
	name, val, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", v)
	}
	*s = append(*s, [2]string{name, val})
	return nil
}

func runSQL(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sql", flag.ContinueOnError)
	export := fs.String("export", "", "an export: SQL script, NDJSON or Parquet (required)")
	query := fs.String("query", "", "SQL to run (default: SELECT * FROM chain_summary)")
	file := fs.String("file", "", "a file of SQL statements to run, e.g. sql/forensics/timeline.sql")
	tmp := fs.String("tmp", "", "directory for the scratch database (default the system's)")
	maxWidth := fs.Int("max-width", 120, "cut cells longer than this many characters (0: never)")
	var sets setFlags
	fs.Var(&sets, "set", "NAME=VALUE: run SET VARIABLE NAME = 'VALUE' first (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *export == "" {
		return fmt.Errorf("sql: --export is required: %w", errUsage)
	}
	if *query != "" && *file != "" {
		return fmt.Errorf("sql: give --query or --file, not both: %w", errUsage)
	}
	var script io.Reader = strings.NewReader("SELECT * FROM chain_summary")
	switch {
	case *query != "":
		script = strings.NewReader(*query)
	case *file != "":
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("sql: %w", err)
		}
		defer f.Close()
		script = f
	}
	return forensics.RunQueries(ctx, *export, *tmp, sets, script, stdout, *maxWidth)
}

func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}

// storeSource opens the store a collector config names. An embedded DuckDB file is read
// with the read-only DuckDB source; the production stores through their Store.
func storeSource(ctx context.Context, path string) (forensics.Source, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if !cfg.Storage.Fleet() {
		return forensics.NewDuckDBSource(cfg.Storage.DuckDB)
	}
	store, err := server.OpenStore(ctx, cfg.Storage, nil, nil)
	if err != nil {
		return nil, err
	}
	name := "clickhouse:" + cfg.Storage.ClickHouse.Addr + "/" + cfg.Storage.ClickHouse.Database + "+postgresql"
	return forensics.NewStoreSource(store, name), nil
}
