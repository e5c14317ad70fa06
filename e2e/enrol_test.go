package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/internal/testwait"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// tokenRE finds a join token in `pki token` output.
var tokenRE = regexp.MustCompile(`tw1\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}\.[0-9a-f]{64}`)

// startEnrolling starts the collector serving enrolment, with extra keys for its pki
// section, and returns the enrolment address. The listener takes port 0, so that no
// other process can take its port between choosing and binding it; the address comes
// from the collector's start line.
func (e *env) startEnrolling(pkiExtra string) string {
	e.t.Helper()
	writeFile(e.t, filepath.Join(e.dir, "collector.yaml"), fmt.Sprintf(
		"listen: {grpc: %q, http: %q, enroll: \"127.0.0.1:0\"}\npki: {dir: pki%s}\nstorage: {duckdb: data/tripwire.duckdb}\napi: {tokens: [%s]}\n",
		e.grpcAddr, e.httpAddr, pkiExtra, e.token))
	e.startCollector()
	m := regexp.MustCompile(`msg="collector serving" .*enroll=(127\.0\.0\.1:\d+)`).FindStringSubmatch(e.collectorLog())
	if m == nil {
		e.t.Fatalf("no enrolment address in the collector's log:\n%s", e.collectorLog())
	}
	return m[1]
}

// joinToken runs `pki token` and returns its output and the token.
func (e *env) joinToken(args ...string) (string, string) {
	e.t.Helper()
	out, err := run(e.t, "tripwire-collector", append([]string{"pki", "token", "--config", filepath.Join(e.dir, "collector.yaml")}, args...)...)
	if err != nil {
		e.t.Fatalf("pki token %v: %v\n%s", args, err, out)
	}
	tok := tokenRE.FindString(out)
	if tok == "" {
		e.t.Fatalf("no token in the output of pki token:\n%s", out)
	}
	return out, tok
}

// collectorLog returns what the collector has logged so far.
func (e *env) collectorLog() string {
	e.t.Helper()
	b, err := os.ReadFile(e.coll.log)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// TestEnrolWithJoinToken: `pki token` makes a token that `tripwire enroll` trades for a
// certificate of a key made on the host; an agent started with the files ships its
// alerts under the token's host name and new host id. The token works once, not after
// it expires, and not against a collector whose CA it does not pin — there nothing is
// sent, so the collector never hears of it. The ingest listener still refuses a client
// without a certificate at the handshake.
func TestEnrolWithJoinToken(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	enrollAddr := e.startEnrolling("")

	out, tok := e.joinToken("--host", "enrolled-01")
	if want := "tripwire enroll --collector " + enrollAddr + " --token " + tok; !strings.Contains(out, want) {
		t.Errorf("pki token output lacks %q:\n%s", want, out)
	}
	dir := filepath.Join(e.dir, "enrolled-pki")
	out, err := run(t, "tripwire", "enroll", "--collector", enrollAddr, "--token", tok, "--dir", dir, "--ingest", e.grpcAddr)
	if err != nil {
		t.Fatalf("tripwire enroll: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`host id ([0-9a-f-]{36})`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, fmt.Sprintf("address: %q", e.grpcAddr)) {
		t.Fatalf("tripwire enroll output:\n%s", out)
	}
	hostID := m[1]
	for f, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "agent.key"): 0o600} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %o", f, fi.Mode().Perm(), err, want)
		}
	}
	if log := e.collectorLog(); !strings.Contains(log, "host enrolled") || !strings.Contains(log, hostID) {
		t.Errorf("the collector did not log the enrolment of %s", hostID)
	}

	// The printed lines are the agent's collector config; the test adds the rest.
	decoy := filepath.Join(e.dir, "decoy")
	writeFile(t, decoy, "x\n")
	hz := freeAddr(t)
	cfg := filepath.Join(e.dir, "enrolled-01.yaml")
	writeFile(t, cfg, out+fmt.Sprintf("audit: {dir: audit-enrolled, max_segment_mb: 1}\nhealthz: %q\nrules:\n  - {name: decoy, type: file, paths: [%s], severity: WARN}\n", hz, decoy))
	e.startAgent(cfg, hz)
	reader := nobody("cat", decoy)
	if err := reader.Run(); err != nil {
		t.Fatal(err)
	}
	a := e.waitAlert(10*time.Second, "host=enrolled-01", func(a alert) bool { return a.EventDetail.PID == reader.Process.Pid })
	if a.HostID != hostID || a.Host != "enrolled-01" {
		t.Errorf("alert from %s (%s), want enrolled-01 (%s)", a.Host, a.HostID, hostID)
	}

	// The same token again, into a fresh directory.
	out, err = run(t, "tripwire", "enroll", "--collector", enrollAddr, "--token", tok, "--dir", filepath.Join(e.dir, "again"))
	if err == nil || !strings.Contains(out, "PermissionDenied") || !strings.Contains(out, "join token refused") {
		t.Errorf("second use of a token: %v\n%s", err, out)
	}

	// An expired token.
	_, short := e.joinToken("--host", "enrolled-02", "--ttl", "1s")
	waitFor(t, 10*time.Second, "the short token to expire", func() (bool, string) {
		out, err := run(t, "tripwire-collector", "pki", "token", "--list", "--config", filepath.Join(e.dir, "collector.yaml"))
		return err == nil && strings.Contains(out, short[4:20]) && regexp.MustCompile(short[4:20]+`\s+enrolled-02\s+\S+\s+expired`).MatchString(out), out
	})
	out, err = run(t, "tripwire", "enroll", "--collector", enrollAddr, "--token", short, "--dir", filepath.Join(e.dir, "expired"))
	if err == nil || !strings.Contains(out, "join token refused") {
		t.Errorf("expired token: %v\n%s", err, out)
	}
	if log := e.collectorLog(); !strings.Contains(log, `reason="join token already used"`) || !strings.Contains(log, `reason="join token expired"`) {
		t.Errorf("the collector's log does not say why the tokens were refused")
	}

	// A token pinning a second PKI's CA: tripwire enroll refuses the collector before
	// it sends anything.
	other := filepath.Join(t.TempDir(), "other-pki")
	if out, err := run(t, "tripwire-collector", "pki", "init", "--dir", other); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	otherCA, err := pemfile.ReadCertificates("CA", filepath.Join(other, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	_, unpinned := e.joinToken("--host", "enrolled-03")
	pin := sha256.Sum256(otherCA[0].Raw)
	foreign := unpinned[:len(unpinned)-64] + hex.EncodeToString(pin[:])
	before := e.collectorLog()
	out, err = run(t, "tripwire", "enroll", "--collector", enrollAddr, "--token", foreign, "--dir", filepath.Join(e.dir, "foreign"))
	if err == nil || !strings.Contains(out, "is not the collector this token was made for") || !strings.Contains(out, "nothing was sent") {
		t.Errorf("token pinning another CA: %v\n%s", err, out)
	}
	// Had the call reached the collector, its log line would precede the answer, and so
	// the exit of tripwire enroll: the log is complete for this attempt now.
	if after := e.collectorLog()[len(before):]; strings.Contains(after, "enrol") || strings.Contains(after, unpinned[4:20]) {
		t.Errorf("the collector logged an enrolment attempt for the unpinned token:\n%s", after)
	}
	out, err = run(t, "tripwire-collector", "pki", "token", "--list", "--config", filepath.Join(e.dir, "collector.yaml"))
	if err != nil || !regexp.MustCompile(unpinned[4:20]+`\s+enrolled-03\s+\S+\s+unused`).MatchString(out) {
		t.Errorf("the token sent to the wrong collector is not unused: %v\n%s", err, out)
	}

	// The ingest listener still wants a certificate at the handshake.
	caPEM, err := os.ReadFile(filepath.Join(e.dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	anonymous := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if _, err := register(t, e.grpcAddr, anonymous, tripwirev1.ProtocolVersion); status.Code(err) != codes.Unavailable {
		t.Errorf("a client without a certificate at the ingest listener: %v, want the handshake to fail", err)
	}
}

// TestShortCertificateRenewedOverStream: an agent whose certificate lives 45 s gets it
// renewed over its stream before it expires: the file on disk changes (new serial, same
// key, same host id), the collector shows the new serial, and the alerts raised before,
// across and after the renewal each arrive once.
func TestShortCertificateRenewedOverStream(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startEnrolling(", agent_cert_validity: 1h")
	decoy, cfg, hz := e.decoyAgentConfig("renew-01", "WARN")
	hostDir := filepath.Join(e.dir, "pki", "renew-01")
	if out, err := run(t, "tripwire-collector", "pki", "issue", "--dir", filepath.Join(e.dir, "pki"), "--host", "renew-01", "--validity", "45s"); err != nil {
		t.Fatalf("pki issue --validity 45s: %v\n%s", err, out)
	}
	certFile, keyFile := filepath.Join(hostDir, "agent.crt"), filepath.Join(hostDir, "agent.key")
	before, err := pemfile.ReadCertificates("certificate", certFile)
	if err != nil {
		t.Fatal(err)
	}
	keyBefore, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	hostID, _, err := pki.HostIdentity(before[0])
	if err != nil {
		t.Fatal(err)
	}
	e.startAgent(cfg, hz)

	// Trip the decoy every half second until the renewal has been recorded.
	var pids []int
	trip := func() {
		r := nobody("cat", decoy)
		if err := r.Run(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, r.Process.Pid)
	}
	var renewed *x509.Certificate
	waitForEvery(t, 60*time.Second, 500*time.Millisecond, "the certificate file to be renewed", func() (bool, string) {
		trip()
		certs, err := pemfile.ReadCertificates("certificate", certFile)
		if err != nil {
			return false, err.Error()
		}
		if pki.SerialHex(certs[0]) == pki.SerialHex(before[0]) {
			return false, "serial " + pki.SerialHex(certs[0])
		}
		renewed = certs[0]
		return true, ""
	})
	if time.Now().After(before[0].NotAfter) {
		t.Errorf("renewed after the old certificate expired (%v)", before[0].NotAfter)
	}
	if id, name, err := pki.HostIdentity(renewed); err != nil || id != hostID || name != "renew-01" {
		t.Errorf("renewed certificate names %q %q (%v), want %s", id, name, err, hostID)
	}
	if life := renewed.NotAfter.Sub(renewed.NotBefore); life < time.Hour || life > time.Hour+10*time.Minute {
		t.Errorf("renewed certificate lives %v, want agent_cert_validity 1h", life)
	}
	if keyAfter, err := os.ReadFile(keyFile); err != nil || !bytes.Equal(keyAfter, keyBefore) {
		t.Error("the key file changed")
	}
	var hosts struct {
		Hosts []struct {
			HostID     string `json:"host_id"`
			CertSerial string `json:"cert_serial"`
		} `json:"hosts"`
	}
	waitFor(t, 15*time.Second, "the collector to show the new serial", func() (bool, string) {
		err := getJSON("http://"+e.httpAddr+"/api/v1/hosts", e.token, &hosts)
		return err == nil && len(hosts.Hosts) == 1 && hosts.Hosts[0].HostID == hostID && hosts.Hosts[0].CertSerial == pki.SerialHex(renewed), fmt.Sprintf("%+v %v", hosts, err)
	})
	trip()
	trip()
	waitFor(t, 15*time.Second, "every alert", func() (bool, string) {
		alerts, err := e.alerts("host=renew-01&limit=1000")
		return err == nil && len(alerts) >= len(pids), fmt.Sprintf("%d alerts of %d, %v", len(alerts), len(pids), err)
	})
	alerts, err := e.alerts("host=renew-01&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	byPID := map[int]int{}
	for _, a := range alerts {
		byPID[a.EventDetail.PID]++
	}
	for _, pid := range pids {
		if byPID[pid] != 1 {
			t.Errorf("read by pid %d: %d alerts, want 1", pid, byPID[pid])
		}
	}
	if len(alerts) != len(pids) {
		t.Errorf("%d alerts for %d reads", len(alerts), len(pids))
	}
	var h struct {
		Certificate struct {
			Serial        string     `json:"serial"`
			LastRenewedAt *time.Time `json:"last_renewed_at"`
			RenewalError  string     `json:"renewal_error"`
		} `json:"certificate"`
	}
	if err := getJSON("http://"+hz+"/healthz", "", &h); err != nil || h.Certificate.Serial != pki.SerialHex(renewed) || h.Certificate.LastRenewedAt == nil || h.Certificate.RenewalError != "" {
		t.Errorf("agent /healthz certificate = %+v (%v)", h.Certificate, err)
	}
	if !strings.Contains(e.collectorLog(), "certificate renewed") {
		t.Error("the collector did not log the renewal")
	}
}

// waitForEvery is waitFor with a chosen polling interval, for conditions whose check
// does work (here, tripping a decoy).
func waitForEvery(t *testing.T, timeout, every time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Until(t, timeout, every, what, cond)
}
