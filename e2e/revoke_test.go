package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRevokedCertificateAndRenewalOnSIGHUP: `pki revoke` cuts the host off — its open
// stream ends and the next handshake fails — while the agent keeps what it records; a
// new certificate for the same host, loaded on SIGHUP without a restart, delivers
// everything held, and nothing is lost.
func TestRevokedCertificateAndRenewalOnSIGHUP(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("revoked-01", "CRITICAL")
	agent := e.startAgent(cfg, hz)
	first := nobody("cat", decoy)
	first.Run()
	e.waitAlert(5*time.Second, "host=revoked-01", func(a alert) bool { return a.EventDetail.PID == first.Process.Pid })

	collectorCfg := filepath.Join(e.dir, "collector.yaml")
	out, err := run(t, "tripwire-collector", "pki", "revoke", "--host", "revoked-01", "--reason", "e2e: host compromised", "--config", collectorCfg)
	if err != nil || !strings.Contains(out, "revoked certificate serial") {
		t.Fatalf("pki revoke: %v\n%s", err, out)
	}
	var h struct {
		Collector struct {
			Connected bool   `json:"connected"`
			LastError string `json:"last_error"`
		} `json:"collector"`
	}
	waitFor(t, 10*time.Second, "the revoked agent cut off", func() (bool, string) {
		getJSON("http://"+hz+"/healthz", "", &h)
		return !h.Collector.Connected && h.Collector.LastError != "", fmt.Sprintf("%+v", h.Collector)
	})
	t.Logf("agent sees: %s", h.Collector.LastError)

	held := nobody("cat", decoy)
	held.Run()
	time.Sleep(3 * time.Second)
	if alerts, _ := e.alerts("host=revoked-01&limit=1000"); len(alerts) != 1 {
		t.Fatalf("%d alerts reached the collector from a revoked host, want only the first", len(alerts))
	}

	if out, err := run(t, "tripwire-collector", "pki", "issue", "--dir", filepath.Join(e.dir, "pki"), "--host", "revoked-01"); err != nil {
		t.Fatalf("pki issue: %v\n%s", err, out)
	}
	agent.cmd.Process.Signal(syscall.SIGHUP)
	a := e.waitAlert(15*time.Second, "host=revoked-01", func(a alert) bool { return a.EventDetail.PID == held.Process.Pid })
	if a.RuleName != "decoy" {
		t.Errorf("held alert %+v", a)
	}
	if agent.exited() {
		t.Fatal("the agent exited: SIGHUP must reload, not stop")
	}
	var hosts struct {
		Hosts []struct {
			Hostname   string `json:"hostname"`
			CertSerial string `json:"cert_serial"`
		} `json:"hosts"`
	}
	if err := getJSON("http://"+e.httpAddr+"/api/v1/hosts", e.token, &hosts); err != nil || len(hosts.Hosts) != 1 || hosts.Hosts[0].CertSerial == "" {
		t.Errorf("hosts = %+v (err %v), want the renewed certificate's serial", hosts, err)
	}
}
