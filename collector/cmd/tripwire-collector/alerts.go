package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// alertsCmd lists alerts from the API, or follows the live stream and prints each alert
// as it arrives, reconnecting if the collector restarts.
func alertsCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	follow := fs.Bool("follow", false, "print alerts live as they arrive (Ctrl-C stops)")
	client := apiFlags(fs, "alerts")
	jsonOut := fs.Bool("json", false, "print each alert as one JSON line")
	typ := fs.String("type", "", "only FILE, NETWORK or PROCESS")
	host := fs.String("host", "", "only this host")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	c, err := client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *typ != "" {
		q.Set("type", *typ)
	}
	if *host != "" {
		q.Set("host", *host)
	}
	print := func(a storage.Alert) {
		if *jsonOut {
			b, _ := json.Marshal(a)
			fmt.Fprintln(stdout, string(b))
			return
		}
		fmt.Fprintln(stdout, formatAlert(a))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !*follow {
		var body struct {
			Alerts []storage.Alert `json:"alerts"`
		}
		if err := c.doJSON(ctx, http.MethodGet, "/api/v1/alerts?"+q.Encode(), nil, &body); err != nil {
			return err
		}
		for i := len(body.Alerts) - 1; i >= 0; i-- { // oldest first, like a log
			print(body.Alerts[i])
		}
		return nil
	}
	fmt.Fprintf(os.Stderr, "following alerts from %s (Ctrl-C stops)\n", c.base)
	// After a reconnect, or being cut off for falling behind, the stored alerts since the
	// last one printed are fetched once the new subscription is in place, so nothing in
	// between is missed; ids already printed are skipped.
	var last time.Time
	seen := map[string]bool{}
	printOnce := func(a storage.Alert) {
		if seen[a.AlertID] {
			return
		}
		if len(seen) > 100_000 {
			clear(seen)
		}
		seen[a.AlertID] = true
		if a.Timestamp.After(last) {
			last = a.Timestamp
		}
		print(a)
	}
	catchUp := func() error {
		if last.IsZero() {
			return nil
		}
		cq := url.Values{}
		for k, v := range q {
			cq[k] = v
		}
		cq.Set("from", last.Add(-time.Second).Format(time.RFC3339Nano))
		cq.Set("limit", "1000")
		var body struct {
			Alerts []storage.Alert `json:"alerts"`
		}
		if err := c.doJSON(ctx, http.MethodGet, "/api/v1/alerts?"+cq.Encode(), nil, &body); err != nil {
			return err
		}
		for i := len(body.Alerts) - 1; i >= 0; i-- {
			printOnce(body.Alerts[i])
		}
		return nil
	}
	for ctx.Err() == nil {
		err := followOnce(ctx, c.base+"/api/v1/alerts/stream?"+q.Encode(), c.token, catchUp, printOnce)
		if ctx.Err() != nil {
			break
		}
		if he, ok := err.(*httpError); ok && he.code == http.StatusUnauthorized || ok && he.code == http.StatusBadRequest {
			return err
		}
		fmt.Fprintf(os.Stderr, "stream interrupted (%v); reconnecting\n", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, strings.TrimSpace(e.body))
}

// followOnce reads one server-sent event stream until it ends; subscribed runs once the
// server confirms the subscription.
func followOnce(ctx context.Context, u, token string, subscribed func() error, print func(storage.Alert)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &httpError{resp.StatusCode, string(b)}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "alert":
			var a storage.Alert
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &a); err == nil {
				print(a)
			}
		case line == ": subscribed":
			if err := subscribed(); err != nil {
				return fmt.Errorf("catching up: %w", err)
			}
		case line == "":
			event = ""
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// formatAlert renders an alert on one line for a terminal.
func formatAlert(a storage.Alert) string {
	var d struct {
		Path    string `json:"path"`
		Op      string `json:"op"`
		PID     int32  `json:"pid"`
		User    string `json:"user"`
		Exe     string `json:"exe"`
		Cmdline string `json:"cmdline"`
		Source  string `json:"source"`
		// Network tripwires.
		Protocol   string `json:"protocol"`
		Direction  string `json:"direction"`
		SrcIP      string `json:"src_ip"`
		SrcPort    uint16 `json:"src_port"`
		DstIP      string `json:"dst_ip"`
		DstPort    uint16 `json:"dst_port"`
		FirstBytes string `json:"first_bytes"`
		// Host events (the dead-man switch, integrity, certificate expiry).
		Message string `json:"message"`
	}
	_ = json.Unmarshal(a.EventDetail, &d)
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-8s %-7s %-20s host=%s", a.Timestamp.Local().Format("15:04:05.000"), a.Severity, a.TripwireType, a.RuleName, a.Host)
	if a.ForkOf != "" { // a chain kept beside the host's own: docs/adr/0014
		fmt.Fprintf(&b, " FORK %s of %s", a.HostID, a.ForkOf)
	}
	if d.Op != "" {
		fmt.Fprintf(&b, " %s %s", d.Op, d.Path)
	}
	if d.Protocol != "" {
		fmt.Fprintf(&b, " %s %s:%d -> %s:%d", d.Protocol, d.SrcIP, d.SrcPort, d.DstIP, d.DstPort)
		if d.FirstBytes != "" && d.FirstBytes != `""` {
			fmt.Fprintf(&b, " sent=%s", d.FirstBytes)
		}
	}
	if d.Message != "" {
		fmt.Fprintf(&b, " %s", d.Message)
	}
	if d.PID != 0 {
		fmt.Fprintf(&b, " pid=%d", d.PID)
	}
	if d.User != "" {
		fmt.Fprintf(&b, " user=%s", d.User)
	}
	if d.Exe != "" {
		fmt.Fprintf(&b, " exe=%s", d.Exe)
	}
	if d.Cmdline != "" {
		fmt.Fprintf(&b, " cmd=%q", d.Cmdline)
	}
	if d.Source != "" && d.Source != "fanotify" {
		fmt.Fprintf(&b, " [%s]", d.Source)
	}
	return b.String()
}
