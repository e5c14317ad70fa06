package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/collector/pki"
)

// TestRevokedCertificateAndRenewalOnSIGHUP: `pki revoke` cuts the host off — its open
// stream ends and the next handshake fails, for its certificate and for any other that
// carries its key, such as one renewed earlier — while the agent keeps what it records;
// a new certificate for the same host, loaded on SIGHUP without a restart, delivers
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

	// A renewal made before the revocation, say by a thief of the key: same key, its own
	// serial, never registered, so unknown to `pki revoke --host`.
	sibling, siblingSerial := renewedCopy(t, filepath.Join(e.dir, "pki"), "revoked-01")
	if err := tlsVerdict(e.grpcAddr, sibling); err != nil {
		t.Fatalf("the renewed copy was refused before any revocation: %v", err)
	}

	collectorCfg := filepath.Join(e.dir, "collector.yaml")
	out, err := run(t, "tripwire-collector", "pki", "revoke", "--host", "revoked-01", "--reason", "e2e: host compromised", "--config", collectorCfg)
	if err != nil || !strings.Contains(out, "revoked certificate serial") || !strings.Contains(out, "revoked its key") {
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
	waitFor(t, 5*time.Second, "the renewed copy refused", func() (bool, string) {
		err := tlsVerdict(e.grpcAddr, sibling)
		return err != nil, fmt.Sprint(err)
	})
	for range 2 {
		if err := tlsVerdict(e.grpcAddr, sibling); err == nil {
			t.Fatal("the renewed copy was accepted after the revocation")
		}
	}
	if log := e.collectorLog(); !strings.Contains(log, "refused a revoked certificate at the handshake") || !strings.Contains(log, "its key is revoked") {
		t.Error("the collector's log does not say it refused the copy for its revoked key")
	}
	// The attempts raise one CRITICAL alert for the copy, naming its serial and address.
	isCopyUse := func(a alert) bool {
		return a.EventDetail.Kind == "REVOKED_CERT" && strings.Contains(a.EventDetail.Message, "serial "+siblingSerial+")")
	}
	use := e.waitAlert(10*time.Second, "host=revoked-01&type=HOST", isCopyUse)
	if use.Severity != "CRITICAL" || use.RuleName != "certificate-revocation" || !strings.Contains(use.EventDetail.Message, "presented from 127.0.0.1:") {
		t.Errorf("revoked certificate use alert %+v", use)
	}

	held := nobody("cat", decoy)
	held.Run()
	time.Sleep(3 * time.Second)
	if alerts, _ := e.alerts("host=revoked-01&type=FILE&limit=1000"); len(alerts) != 1 {
		t.Fatalf("%d alerts reached the collector from a revoked host, want only the first", len(alerts))
	}
	hostAlerts, _ := e.alerts("host=revoked-01&type=HOST&limit=1000")
	if n := len(slices.DeleteFunc(hostAlerts, func(a alert) bool { return !isCopyUse(a) })); n != 1 {
		t.Errorf("%d alerts for the revoked copy's three attempts, want 1 (once an hour)", n)
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

// renewedCopy signs, as a renewal over the stream does, a second certificate for the key
// of host's agent.crt in pkiDir, and returns a client configuration presenting it and
// its serial.
func renewedCopy(t *testing.T, pkiDir, host string) (*tls.Config, string) {
	t.Helper()
	hostDir := filepath.Join(pkiDir, host)
	caFile, keyFile := filepath.Join(pkiDir, "ca.crt"), filepath.Join(hostDir, "agent.key")
	agent, err := transport.LoadClientTLS(caFile, filepath.Join(hostDir, "agent.crt"), keyFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	hostID, hostname, err := pki.HostIdentity(agent.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	der, err := agent.RenewalCSR() // what the agent sends to renew
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := pki.NewSigner(pkiDir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := signer.SignHost(csr, hostID, hostname)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "agent.crt")
	writeFile(t, certFile, string(sc.PEM))
	c, err := transport.LoadClientTLS(caFile, certFile, keyFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return c.Config(), pki.SerialHex(sc.Certificate)
}

// tlsVerdict is nil if the collector at addr accepts cfg's certificate, and the
// handshake's failure if not. In TLS 1.3 the server judges the client's certificate
// after the client has finished: the verdict is the server's first bytes (its HTTP/2
// settings) or an alert.
func tlsVerdict(addr string, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"} // as gRPC offers it: its server refuses a connection without
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return err
	}
	return nil
}
