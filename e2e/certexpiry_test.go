package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCertificateExpiryWarns: a host whose certificate expires within 30 days raises one
// WARN host event when it registers, and not another when it registers again.
func TestCertificateExpiryWarns(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	_, cfg, hz := e.decoyAgentConfig("expiring-01", "INFO")
	if out, err := run(t, "tripwire-collector", "pki", "issue", "--dir", filepath.Join(e.dir, "pki"), "--host", "expiring-01", "--validity", "240h"); err != nil {
		t.Fatalf("pki issue --validity: %v\n%s", err, out)
	}
	agent := e.startAgent(cfg, hz)
	var body struct {
		Events []struct{ Kind, Host, Severity, Message string } `json:"events"`
	}
	waitFor(t, 20*time.Second, "a CERT_EXPIRY warning", func() (bool, string) {
		getJSON("http://"+e.httpAddr+"/api/v1/host-events", e.token, &body)
		return len(body.Events) > 0, ""
	})
	ev := body.Events[0]
	if len(body.Events) != 1 || ev.Kind != "CERT_EXPIRY" || ev.Severity != "WARN" || ev.Host != "expiring-01" || !strings.Contains(ev.Message, "expires at") {
		t.Fatalf("host events = %+v, want one WARN CERT_EXPIRY for expiring-01", body.Events)
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
