package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/internal/pemfile"
)

// TestCertificateExpiryWarns: a host whose certificate is within 30 days of expiry and
// overdue for renewal — here because the collector keeps no CA key and so cannot renew
// it — raises one WARN host event when it registers, and not another when it registers
// again. The agent keeps asking, and its /healthz says why renewal fails.
func TestCertificateExpiryWarns(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	_, cfg, hz := e.decoyAgentConfig("expiring-01", "INFO")
	pkiDir := filepath.Join(e.dir, "pki")
	overdueCert(t, pkiDir, "expiring-01", 30*24*time.Hour, 2*24*time.Hour)
	// The CA key kept offline: the collector runs, and cannot renew anything.
	if err := os.Rename(filepath.Join(pkiDir, "ca.key"), filepath.Join(e.dir, "ca.key.offline")); err != nil {
		t.Fatal(err)
	}
	e.startCollector()
	agent := e.startAgent(cfg, hz)
	var body struct {
		Events []struct{ Kind, Host, Severity, Message string } `json:"events"`
	}
	waitFor(t, 20*time.Second, "a CERT_EXPIRY warning", func() (bool, string) {
		getJSON("http://"+e.httpAddr+"/api/v1/host-events", e.token, &body)
		return len(body.Events) > 0, ""
	})
	ev := body.Events[0]
	if len(body.Events) != 1 || ev.Kind != "CERT_EXPIRY" || ev.Severity != "WARN" || ev.Host != "expiring-01" ||
		!strings.Contains(ev.Message, "expires at") || !strings.Contains(ev.Message, "renewal is overdue") {
		t.Fatalf("host events = %+v, want one WARN CERT_EXPIRY for expiring-01 saying renewal is overdue", body.Events)
	}
	var h struct {
		Status      string `json:"status"`
		Certificate struct {
			RenewalError   string `json:"renewal_error"`
			RenewalOverdue bool   `json:"renewal_overdue"`
		} `json:"certificate"`
	}
	waitFor(t, 15*time.Second, "the agent to report the refused renewal", func() (bool, string) {
		getJSON("http://"+hz+"/healthz", "", &h)
		return strings.Contains(h.Certificate.RenewalError, "does not sign certificates"), h.Certificate.RenewalError
	})
	if !h.Certificate.RenewalOverdue || h.Status != "degraded" {
		t.Errorf("agent /healthz: status %q, certificate %+v; want degraded and renewal overdue", h.Status, h.Certificate)
	}
	agent.stop(syscall.SIGTERM)
	e.coll.stop(syscall.SIGTERM)
	e.startCollector() // checks again at start: the same certificate is not raised twice
	e.startAgent(cfg, hz)
	time.Sleep(2 * time.Second)
	getJSON("http://"+e.httpAddr+"/api/v1/host-events", e.token, &body)
	if len(body.Events) != 1 {
		t.Errorf("after a restart: %d host events, want still 1", len(body.Events))
	}
}

// overdueCert replaces host's certificate in pkiDir with one for the same key and
// identity, issued age ago and expiring in left: pki issue always starts a certificate
// now, and a renewal is overdue only late in a certificate's life.
func overdueCert(t *testing.T, pkiDir, host string, age, left time.Duration) {
	t.Helper()
	cas, err := pemfile.ReadCertificates("CA", filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := pemfile.ReadPrivateKey(filepath.Join(pkiDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(pkiDir, host, "agent.crt")
	old, err := pemfile.ReadCertificates("certificate", certFile)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: old[0].Subject, URIs: old[0].URIs,
		KeyUsage: old[0].KeyUsage, ExtKeyUsage: old[0].ExtKeyUsage, BasicConstraintsValid: true,
		NotBefore: now.Add(-age), NotAfter: now.Add(left),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, cas[0], old[0].PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}
