package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tripwire-project/tripwire/collector/api"
)

// tokenCmd makes a one-time join token through the API (POST /api/v1/pki/tokens), so
// that the running collector, which holds the CA, records it where every replica can
// redeem it; it prints the token and the `tripwire enroll` command that uses it. With
// --list it prints every token made (GET /api/v1/pki/tokens).
func tokenCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pki token", flag.ContinueOnError)
	client := apiFlags(fs, "pki token")
	host := fs.String("host", "", "the host name the enrolled certificate will carry (required unless --list)")
	ttl := fs.Duration("ttl", api.DefaultTokenTTL, "how long the token can be used (at most 168h)")
	enrollAddr := fs.String("collector", "", "the enrolment address hosts reach (default listen.enroll, with this machine's name for an unspecified host)")
	list := fs.Bool("list", false, "list the tokens made, used and expired ones included, instead of making one")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() > 0 || (*host == "") == !*list {
		return usageError("pki token: give --host NAME, or --list")
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *list {
		return listTokens(ctx, c, stdout)
	}
	var tr api.TokenResponse
	if err := c.doJSON(ctx, http.MethodPost, "/api/v1/pki/tokens", map[string]string{"host": *host, "ttl": ttl.String()}, &tr); err != nil {
		return fmt.Errorf("making a join token: %w", err)
	}
	addr := *enrollAddr
	if addr == "" {
		addr = dialable(tr.EnrollAddress)
	}
	fmt.Fprintf(stdout, "join token for host %s (new host id %s), usable once until %s (%s):\n\n  %s\n\n",
		tr.Hostname, tr.HostID, tr.ExpiresAt.Local().Format(time.RFC3339), ttl, tr.Token)
	fmt.Fprintf(stdout, "on the host (writes /etc/tripwire/pki; run it as the agent's user, see docs/operations.md):\n\n  tripwire enroll --collector %s --token %s\n\n", addr, tr.Token)
	fmt.Fprintf(stdout, "The token is a credential until it is used or expires: pass it to the host only. It pins the collector's CA (sha256 %s).\n", tr.CASHA256)
	return nil
}

// dialable turns a listen address into one a host can dial: an unspecified host
// (0.0.0.0, ::, none) becomes this machine's name.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			host = name
		}
	}
	return net.JoinHostPort(host, port)
}

// listTokens prints every join token, newest first.
func listTokens(ctx context.Context, c *apiClient, out io.Writer) error {
	var body struct {
		Tokens  []api.TokenInfo `json:"tokens"`
		Enabled bool            `json:"enrolment_enabled"`
	}
	if err := c.doJSON(ctx, http.MethodGet, "/api/v1/pki/tokens", nil, &body); err != nil {
		return fmt.Errorf("listing join tokens: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tHOST ID\tSTATE\tBY\tCREATED\tEXPIRES\tUSED\tFROM")
	ts := func(t time.Time) string { return t.Local().Format(time.RFC3339) }
	for _, t := range body.Tokens {
		used := "-"
		if t.UsedAt != nil {
			used = ts(*t.UsedAt)
		}
		from := t.UsedFrom
		if from == "" {
			from = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Hostname, t.HostID, t.State, t.CreatedBy, ts(t.CreatedAt), ts(t.ExpiresAt), used, from)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !body.Enabled {
		fmt.Fprintln(out, "enrolment is disabled on this collector (listen.enroll is not set)")
	}
	return nil
}
