package transport_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
)

func TestRenewAfter(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(24 * time.Hour)}
	if got := transport.RenewAfter(c); !got.Equal(nb.Add(16 * time.Hour)) {
		t.Errorf("RenewAfter = %v, want two thirds of a day in", got)
	}
}

// signFor asks c's CA to sign a renewal of hc's certificate, as the collector does.
func signFor(t *testing.T, c *collector, loader *transport.ClientTLS, hostID, name string) []byte {
	t.Helper()
	der, err := loader.RenewalCSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatalf("the agent's signing request: %v", err)
	}
	if err := pki.CheckRenewalKey(csr, loader.Certificate()); err != nil {
		t.Fatalf("the agent's signing request: %v", err)
	}
	s, err := pki.NewSigner(c.dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := s.SignHost(csr, hostID, name)
	if err != nil {
		t.Fatal(err)
	}
	return sc.PEM
}

// A renewed certificate replaces the certificate file (same key, same identity, new
// serial), keeps its mode, and is presented at the next handshake; the key file is not
// touched.
func TestInstallRenewed(t *testing.T) {
	c := startCollector(t)
	hc := c.issue(t, "web1", pki.IssueOptions{Validity: 2 * time.Minute})
	if err := os.Chmod(hc.CertFile, 0o640); err != nil {
		t.Fatal(err)
	}
	loader, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	keyBefore, err := os.ReadFile(hc.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := loader.InstallRenewed(signFor(t, c, loader, hc.HostID, "web1"))
	if err != nil {
		t.Fatalf("InstallRenewed: %v", err)
	}
	if pki.SerialHex(renewed) == hc.Serial || pki.SerialHex(loader.Certificate()) != pki.SerialHex(renewed) {
		t.Errorf("serial in use %s, renewed %s, old %s", pki.SerialHex(loader.Certificate()), pki.SerialHex(renewed), hc.Serial)
	}
	onDisk, err := pemfile.ReadCertificates("certificate", hc.CertFile)
	if err != nil || !onDisk[0].Equal(renewed) {
		t.Fatalf("certificate file does not hold the renewed certificate: %v", err)
	}
	if fi, err := os.Stat(hc.CertFile); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("certificate file mode %v (%v), want 0640 kept", fi.Mode().Perm(), err)
	}
	if keyAfter, err := os.ReadFile(hc.KeyFile); err != nil || !bytes.Equal(keyAfter, keyBefore) {
		t.Error("the key file changed")
	}
	if id, name, err := pki.HostIdentity(renewed); err != nil || id != hc.HostID || name != "web1" {
		t.Errorf("renewed identity %q %q %v", id, name, err)
	}
	if got, err := register(t, c.addr, loader.Config()); err != nil || got != hc.HostID {
		t.Errorf("handshake with the renewed certificate: %q, %v", got, err)
	}
	if entries, _ := os.ReadDir(hc.Dir); len(entries) != 3 {
		t.Errorf("host directory holds %d files, want ca.crt, agent.crt, agent.key and no leftover", len(entries))
	}
}

// Whatever is wrong with a renewed certificate, the file and the certificate in use stay
// as they were.
func TestInstallRenewedRefusals(t *testing.T) {
	c := startCollector(t)
	hc := c.issue(t, "web1", pki.IssueOptions{})
	loader, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	otherHost := c.issue(t, "web2", pki.IssueOptions{})
	otherCA := startCollector(t)

	tests := []struct {
		name string
		pem  func(t *testing.T) []byte
		want string
	}{
		{"not PEM", func(*testing.T) []byte { return []byte("garbage") }, "unusable renewed certificate"},
		{"another key", func(t *testing.T) []byte {
			data, err := os.ReadFile(otherHost.CertFile)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}, "not for this agent's key"},
		{"another host id", func(t *testing.T) []byte {
			return signFor(t, c, loader, "0b2b5e3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b", "web1")
		}, "not this host"},
		{"another host name", func(t *testing.T) []byte { return signFor(t, c, loader, hc.HostID, "web9") }, "not this host"},
		{"another CA", func(t *testing.T) []byte { return signFor(t, otherCA, loader, hc.HostID, "web1") }, "does not verify against the collector CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loader.InstallRenewed(tt.pem(t))
			if !errors.Is(err, transport.ErrRenewedCertificate) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("InstallRenewed = %v, want %q", err, tt.want)
			}
			if pki.SerialHex(loader.Certificate()) != hc.Serial {
				t.Error("the certificate in use changed")
			}
			if onDisk, err := pemfile.ReadCertificates("certificate", hc.CertFile); err != nil || pki.SerialHex(onDisk[0]) != hc.Serial {
				t.Error("the certificate file changed")
			}
		})
	}

	// New material put in place without a reload: renewing the old key over it would
	// leave a certificate that does not match the key file.
	good := signFor(t, c, loader, hc.HostID, "web1")
	reissued := c.issue(t, "web1", pki.IssueOptions{})
	_, err = loader.InstallRenewed(good)
	if err == nil || !strings.Contains(err.Error(), "changed since it was loaded") {
		t.Fatalf("InstallRenewed over a new key file: %v", err)
	}
	if onDisk, err := pemfile.ReadCertificates("certificate", hc.CertFile); err != nil || pki.SerialHex(onDisk[0]) != reissued.Serial {
		t.Error("the operator's new certificate was overwritten")
	}
}
