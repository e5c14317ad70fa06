package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDeadManSwitch: an agent that stops sending heartbeats (SIGSTOP: the connection
// stays open, the agent is silent) is marked OFFLINE within the configured interval,
// with a CRITICAL host event on the live stream; when it continues, its return is an
// event too.
func TestDeadManSwitch(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	cfgPath := filepath.Join(e.dir, "collector.yaml")
	text, _ := os.ReadFile(cfgPath)
	writeFile(t, cfgPath, string(text)+"dead_man_seconds: 8\n")
	e.startCollector()
	_, cfg, hz := e.decoyAgentConfig("silent-01", "INFO")
	agent := e.startAgent(cfg, hz)
	waitFor(t, 10*time.Second, "the host registered", func() (bool, string) {
		st := e.hostStatus("silent-01")
		return st == "ONLINE", st
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	live := followEvents(ctx, t, e.httpAddr, e.token)

	stopped := time.Now()
	agent.cmd.Process.Signal(syscall.SIGSTOP)
	defer agent.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, 16*time.Second, "the host marked OFFLINE", func() (bool, string) {
		st := e.hostStatus("silent-01")
		return st == "OFFLINE", st
	})
	t.Logf("OFFLINE %v after SIGSTOP (dead_man_seconds 8, heartbeats every 5 s)", time.Since(stopped).Round(100*time.Millisecond))
	waitLive(t, live, `"tripwire_type":"HOST"`, `"severity":"CRITICAL"`, `OFFLINE`)

	agent.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, "the host back ONLINE", func() (bool, string) {
		st := e.hostStatus("silent-01")
		return st == "ONLINE", st
	})
	waitLive(t, live, `"tripwire_type":"HOST"`, `ONLINE`)
	var body struct {
		Events []struct{ Kind, Host, Severity string } `json:"events"`
	}
	if err := getJSON("http://"+e.httpAddr+"/api/v1/host-events", e.token, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Events) != 2 || body.Events[0].Kind != "ONLINE" || body.Events[1].Kind != "OFFLINE" || body.Events[1].Host != "silent-01" {
		t.Errorf("host events = %+v, want OFFLINE then ONLINE for silent-01", body.Events)
	}

	// Both are alerts in the index, and the OFFLINE one is triaged like any alert.
	alerts, err := e.alerts("type=HOST&host=silent-01")
	if err != nil || len(alerts) != 2 || alerts[1].RuleName != "dead-man" || alerts[1].Severity != "CRITICAL" || alerts[0].Severity != "INFO" {
		t.Fatalf("HOST alerts of silent-01 = %+v, %v; want ONLINE (INFO) then OFFLINE (CRITICAL), rule dead-man", alerts, err)
	}
	req, _ := http.NewRequest(http.MethodPatch, "http://"+e.httpAddr+"/api/v1/alerts/"+alerts[1].AlertID,
		strings.NewReader(`{"status": "acknowledged", "note": "stopped on purpose by the test"}`))
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH of the OFFLINE alert: %s", resp.Status)
	}
	if acked, err := e.alerts("type=HOST&status=acknowledged"); err != nil || len(acked) != 1 || acked[0].AlertID != alerts[1].AlertID {
		t.Errorf("acknowledged HOST alerts = %+v, %v; want the OFFLINE one", acked, err)
	}
}

func (e *env) hostStatus(host string) string {
	var body struct {
		Hosts []struct{ Hostname, Status string } `json:"hosts"`
	}
	if err := getJSON("http://"+e.httpAddr+"/api/v1/hosts", e.token, &body); err != nil {
		return err.Error()
	}
	for _, h := range body.Hosts {
		if h.Hostname == host {
			return h.Status
		}
	}
	return fmt.Sprintf("no host %s in %+v", host, body.Hosts)
}

// followEvents sends the data (the alert JSON) of each event of the live stream.
func followEvents(ctx context.Context, t *testing.T, httpAddr, token string) <-chan string {
	t.Helper()
	return streamLines(ctx, t, httpAddr, token, "data: ")
}

func waitLive(t *testing.T, lines <-chan string, want ...string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-lines:
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return
			}
		case <-timeout:
			t.Fatalf("no live event containing %q within 10 s", want)
		}
	}
}
