package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tripwire-project/tripwire/agent/enroll"
	"github.com/tripwire-project/tripwire/internal/version"
)

// defaultIngestPort is the collector's default listen.grpc port, for the address the
// printed config guesses when --ingest is not given.
const defaultIngestPort = 7443

// enrollCmd enrols this host (agent/enroll) and prints, as YAML with comments, the
// lines of config.yaml that use the files it wrote.
func enrollCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	collector := fs.String("collector", "", "the collector's enrolment address, host:port (its listen.enroll; required)")
	token := fs.String("token", "", "the join token from `tripwire-collector pki token` (default $TRIPWIRE_JOIN_TOKEN)")
	dir := fs.String("dir", enroll.DefaultDir, "where to write ca.crt, agent.crt and agent.key")
	force := fs.Bool("force", false, "replace an existing agent.key (the host becomes a new host, with a fresh chain)")
	serverName := fs.String("server-name", "", "the name to check in the collector's certificate (default the host part of --collector)")
	ingest := fs.String("ingest", "", "the collector's ingest address (listen.grpc), for the printed config (default: --collector's host, port 7443)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *token == "" {
		*token = os.Getenv("TRIPWIRE_JOIN_TOKEN")
	}
	if *collector == "" || *token == "" || fs.NArg() > 0 {
		return usageError("enroll: --collector and --token (or $TRIPWIRE_JOIN_TOKEN) are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := enroll.Enroll(ctx, enroll.Options{
		Collector: *collector, Token: *token, Dir: *dir, ServerName: *serverName, Force: *force, AgentVersion: version.Version,
	})
	if err != nil {
		return err
	}
	address, guessed := *ingest, false
	if address == "" {
		host, _, _ := net.SplitHostPort(*collector)
		address, guessed = net.JoinHostPort(host, strconv.Itoa(defaultIngestPort)), true
	}
	fmt.Fprintf(stdout, "# Enrolled as host %s (host id %s): certificate serial %s, valid until %s;\n",
		r.Hostname, r.HostID, r.Serial, r.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "# the agent renews it over its stream before it expires. Wrote %s, %s and %s.\n", r.CAFile, r.CertFile, r.KeyFile)
	fmt.Fprintln(stdout, "# For the agent's config.yaml. collector.address is the collector's ingest listener")
	if guessed {
		fmt.Fprintln(stdout, "# (listen.grpc), not its enrolment one: this one is a guess, check it (or pass --ingest).")
	} else {
		fmt.Fprintln(stdout, "# (listen.grpc), as given with --ingest.")
	}
	fmt.Fprintf(stdout, "host: %s\ncollector:\n  address: %q\n  ca: %q\n  cert: %q\n  key: %q\n", r.Hostname, address, r.CAFile, r.CertFile, r.KeyFile)
	if *serverName != "" {
		fmt.Fprintf(stdout, "  server_name: %q\n", *serverName)
	}
	return nil
}
