package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/internal/pemfile"
)

// newPKI makes a PKI directory with Init's defaults in a fresh temporary directory.
func newPKI(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := Init(dir, InitOptions{}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return dir
}

// mustCert reads the first certificate of a PEM file.
func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := pemfile.ReadCertificates("certificate", path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// checkMode fails unless path has exactly the permission bits want.
func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %o, want %o", path, got, want)
	}
}

func TestInitWritesCAAndServer(t *testing.T) {
	dir := newPKI(t)
	checkMode(t, dir, 0o700)
	checkMode(t, filepath.Join(dir, CACertFile), 0o644)
	checkMode(t, filepath.Join(dir, CAKeyFile), 0o600)
	checkMode(t, filepath.Join(dir, ServerCertFile), 0o644)
	checkMode(t, filepath.Join(dir, ServerKeyFile), 0o600)

	ca := mustCert(t, filepath.Join(dir, CACertFile))
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; ca.KeyUsage != want {
		t.Errorf("CA key usage = %v, want %v", ca.KeyUsage, want)
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life < CAValidity || life > CAValidity+time.Hour {
		t.Errorf("CA lifetime = %v, want about %v", life, CAValidity)
	}

	srv := mustCert(t, filepath.Join(dir, ServerCertFile))
	if _, err := srv.Verify(x509.VerifyOptions{Roots: poolOf(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate does not verify: %v", err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := srv.VerifyHostname(name); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}
	if h, err := os.Hostname(); err == nil && ValidateHostname(h) == nil {
		if err := srv.VerifyHostname(h); err != nil {
			t.Errorf("server certificate lacks the host name: %v", err)
		}
	}
}

func TestInitServerNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := Init(dir, InitOptions{ServerNames: []string{"collector.example.com", "10.0.0.7"}}); err != nil {
		t.Fatal(err)
	}
	srv := mustCert(t, filepath.Join(dir, ServerCertFile))
	if !slices.Equal(srv.DNSNames, []string{"collector.example.com"}) || len(srv.IPAddresses) != 1 || srv.IPAddresses[0].String() != "10.0.0.7" {
		t.Errorf("SANs = %v %v", srv.DNSNames, srv.IPAddresses)
	}

	bad := filepath.Join(t.TempDir(), "pki")
	err := Init(bad, InitOptions{ServerNames: []string{"collector example"}})
	var fe *InvalidFieldError
	if !errors.As(err, &fe) || fe.Field != "server name" {
		t.Fatalf("Init with a bad server name: %v, want an InvalidFieldError on server name", err)
	}
	if _, err := os.Stat(bad); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Init with a bad server name wrote %s", bad)
	}
}

func TestInitRefusesExistingCA(t *testing.T) {
	dir := newPKI(t)
	before := mustCert(t, filepath.Join(dir, CACertFile))

	err := Init(dir, InitOptions{})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Init: %v, want fs.ErrExist", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, CACertFile)) {
		t.Errorf("error %q does not name %s", err, CACertFile)
	}
	if !mustCert(t, filepath.Join(dir, CACertFile)).Equal(before) {
		t.Fatal("refused Init changed the CA")
	}

	// A lone key (a crash between the two writes) is refused too.
	if err := os.Remove(filepath.Join(dir, CACertFile)); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, InitOptions{}); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), CAKeyFile) {
		t.Fatalf("Init over a lone CA key: %v, want fs.ErrExist naming %s", err, CAKeyFile)
	}

	if err := Init(dir, InitOptions{Force: true}); err != nil {
		t.Fatalf("Init with Force: %v", err)
	}
	if mustCert(t, filepath.Join(dir, CACertFile)).Equal(before) {
		t.Error("Init with Force kept the old CA")
	}
}

func TestIssue(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "web-01.prod", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(dir, "web-01.prod")
	checkMode(t, hostDir, 0o700)
	checkMode(t, filepath.Join(hostDir, AgentKeyFile), 0o600)
	checkMode(t, filepath.Join(hostDir, AgentCertFile), 0o644)
	checkMode(t, filepath.Join(hostDir, CACertFile), 0o644)
	if hc.Dir != hostDir || hc.CertFile != filepath.Join(hostDir, AgentCertFile) || hc.KeyFile != filepath.Join(hostDir, AgentKeyFile) || hc.CAFile != filepath.Join(hostDir, CACertFile) {
		t.Errorf("paths = %q %q %q %q", hc.Dir, hc.CertFile, hc.KeyFile, hc.CAFile)
	}

	ca := mustCert(t, filepath.Join(dir, CACertFile))
	if !mustCert(t, hc.CAFile).Equal(ca) {
		t.Error("host ca.crt is not the CA")
	}
	cert := mustCert(t, hc.CertFile)
	if !cert.Equal(hc.Certificate) {
		t.Error("HostCert.Certificate is not the written certificate")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: poolOf(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("host certificate does not verify for client auth: %v", err)
	}
	if cert.Subject.CommonName != "web-01.prod" || len(cert.URIs) != 1 || cert.URIs[0].String() != HostURIPrefix+hc.HostID {
		t.Errorf("subject %q, URIs %v", cert.Subject.CommonName, cert.URIs)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || cert.IsCA {
		t.Errorf("EKU %v, IsCA %v", cert.ExtKeyUsage, cert.IsCA)
	}
	if cert.SerialNumber.BitLen() > 128 || cert.SerialNumber.Sign() <= 0 || hc.Serial != cert.SerialNumber.Text(16) {
		t.Errorf("serial %x (HostCert %s)", cert.SerialNumber, hc.Serial)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("host key is %T, want ECDSA P-256", cert.PublicKey)
	}
	now := time.Now()
	if d := now.Sub(cert.NotBefore); d < 4*time.Minute || d > 6*time.Minute {
		t.Errorf("NotBefore is %v before now, want about 5m", d)
	}
	if d := cert.NotAfter.Sub(now); d < DefaultHostValidity-time.Minute || d > DefaultHostValidity+time.Minute {
		t.Errorf("NotAfter is %v from now, want about %v", d, DefaultHostValidity)
	}
	key, err := pemfile.ReadPrivateKey(hc.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		t.Error("agent.key does not match agent.crt")
	}
	id, name, err := HostIdentity(cert)
	if err != nil || id != hc.HostID || name != "web-01.prod" {
		t.Errorf("HostIdentity = %q, %q, %v; want %q, web-01.prod", id, name, err, hc.HostID)
	}
}

func TestIssueValidity(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "short", IssueOptions{Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(hc.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("NotAfter in %v, want 24h", d)
	}
	// Past the CA's own expiry a chain cannot verify, so the certificate stops there.
	hc, err = Issue(dir, "long", IssueOptions{Validity: 20 * CAValidity})
	if err != nil {
		t.Fatal(err)
	}
	if ca := mustCert(t, filepath.Join(dir, CACertFile)); !hc.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("NotAfter %v, want the CA's %v", hc.NotAfter, ca.NotAfter)
	}
	var fe *InvalidFieldError
	if _, err := Issue(dir, "neg", IssueOptions{Validity: -time.Hour}); !errors.As(err, &fe) || fe.Field != "validity" {
		t.Errorf("negative validity: %v", err)
	}
}

func TestIssueKeepsHostID(t *testing.T) {
	dir := newPKI(t)
	first, err := Issue(dir, "db1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := Issue(dir, "db1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.HostID != first.HostID {
		t.Errorf("re-issue changed the host id: %s -> %s", first.HostID, again.HostID)
	}
	if again.Serial == first.Serial || again.Fingerprint == first.Fingerprint {
		t.Error("re-issue reused the serial or certificate")
	}
	renewed, err := Issue(dir, "db1", IssueOptions{NewHostID: true})
	if err != nil {
		t.Fatal(err)
	}
	if renewed.HostID == first.HostID {
		t.Error("NewHostID kept the host id")
	}
	other, err := Issue(dir, "db2", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if other.HostID == renewed.HostID {
		t.Error("two hosts share an id")
	}
}

func TestIssueUnreadableExistingCert(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "db1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hc.CertFile, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Issue(dir, "db1", IssueOptions{})
	if !errors.Is(err, ErrNotPEM) || !strings.Contains(err.Error(), hc.CertFile) {
		t.Fatalf("Issue over a broken agent.crt: %v, want ErrNotPEM naming the file", err)
	}
	if _, err := Issue(dir, "db1", IssueOptions{NewHostID: true}); err != nil {
		t.Fatalf("Issue with NewHostID over a broken agent.crt: %v", err)
	}
}

func TestIssueWithoutCA(t *testing.T) {
	dir := t.TempDir()
	_, err := Issue(dir, "db1", IssueOptions{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, CACertFile)) {
		t.Fatalf("Issue without a CA: %v, want fs.ErrNotExist naming ca.crt", err)
	}
}

func TestIssueCAKeyMismatch(t *testing.T) {
	dir, other := newPKI(t), newPKI(t)
	data, err := os.ReadFile(filepath.Join(other, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Issue(dir, "db1", IssueOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Issue with a foreign CA key: %v", err)
	}
}

func TestValidateHostname(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		wantErr bool
	}{
		{"simple", "web1", false},
		{"fqdn", "web-01.prod.example.com", false},
		{"underscore", "build_agent", false},
		{"upper case", "WEB1", false},
		{"digits only", "12345", false},
		{"253 characters", strings.Repeat(strings.Repeat("a", 62)+".", 4) + "a", false},
		{"empty", "", true},
		{"254 characters", strings.Repeat(strings.Repeat("a", 62)+".", 4) + "ab", true},
		{"64-character label", strings.Repeat("a", 64) + ".example", true},
		{"dot dot", "..", true},
		{"traversal", "../etc", true},
		{"embedded dot dot", "a..b", true},
		{"slash", "a/b", true},
		{"absolute", "/etc/passwd", true},
		{"backslash", `a\b`, true},
		{"leading dot", ".hidden", true},
		{"lone dot", ".", true},
		{"trailing dot", "web1.", true},
		{"leading hyphen", "-rf", true},
		{"label leading hyphen", "web.-x", true},
		{"space", "web 1", true},
		{"NUL", "web\x001", true},
		{"non-ASCII", "wéb", true},
		{"colon", "web:1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateHostname(tt.host)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ValidateHostname(%q) = %v, wantErr %v", tt.host, err, tt.wantErr)
			}
			if err == nil {
				return
			}
			var fe *InvalidFieldError
			if !errors.As(err, &fe) || fe.Field != "hostname" || !strings.Contains(err.Error(), "hostname") {
				t.Errorf("error %v does not name the hostname field", err)
			}
		})
	}
}

func TestIssueRejectsBadHostname(t *testing.T) {
	dir := newPKI(t)
	for _, host := range []string{"../outside", "a/b", "", ".."} {
		_, err := Issue(dir, host, IssueOptions{})
		var fe *InvalidFieldError
		if !errors.As(err, &fe) || fe.Field != "hostname" {
			t.Errorf("Issue(%q) = %v, want an InvalidFieldError on hostname", host, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "outside")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Issue wrote outside the PKI directory")
	}
}

func TestHostIdentity(t *testing.T) {
	const id = "0b9f3a52-2c1e-4f7d-9d2a-5c6e7f8a9b0c"
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name   string
		cn     string
		uris   []*url.URL
		wantID string
	}{
		{"one host URI", "web1", []*url.URL{uri(HostURIPrefix + id)}, id},
		{"with other URIs", "web1", []*url.URL{uri("spiffe://example.org/web"), uri(HostURIPrefix + id)}, id},
		{"no URI", "web1", nil, ""},
		{"other URI only", "web1", []*url.URL{uri("spiffe://example.org/web")}, ""},
		{"two host URIs", "web1", []*url.URL{uri(HostURIPrefix + id), uri(HostURIPrefix + "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b")}, ""},
		{"same host URI twice", "web1", []*url.URL{uri(HostURIPrefix + id), uri(HostURIPrefix + id)}, ""},
		{"not a UUID", "web1", []*url.URL{uri(HostURIPrefix + "web1")}, ""},
		{"upper-case UUID", "web1", []*url.URL{uri(HostURIPrefix + strings.ToUpper(id))}, ""},
		{"undashed UUID", "web1", []*url.URL{uri(HostURIPrefix + strings.ReplaceAll(id, "-", ""))}, ""},
		{"braced UUID", "web1", []*url.URL{uri(HostURIPrefix + "{" + id + "}")}, ""},
		{"nil UUID", "web1", []*url.URL{uri(HostURIPrefix + "00000000-0000-0000-0000-000000000000")}, ""},
		{"fragment", "web1", []*url.URL{uri(HostURIPrefix + id + "#x")}, ""},
		{"empty id", "web1", []*url.URL{uri(HostURIPrefix)}, ""},
		{"no common name", "", []*url.URL{uri(HostURIPrefix + id)}, ""},
		{"bad common name", "../x", []*url.URL{uri(HostURIPrefix + id)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{Subject: pkix.Name{CommonName: tt.cn}, URIs: tt.uris}
			gotID, gotName, err := HostIdentity(cert)
			if tt.wantID == "" {
				if !errors.Is(err, ErrNoIdentity) {
					t.Fatalf("HostIdentity = %q, %v; want ErrNoIdentity", gotID, err)
				}
				return
			}
			if err != nil || gotID != tt.wantID || gotName != tt.cn {
				t.Fatalf("HostIdentity = %q, %q, %v; want %q, %q", gotID, gotName, err, tt.wantID, tt.cn)
			}
		})
	}
	if _, _, err := HostIdentity(nil); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("HostIdentity(nil) = %v", err)
	}
}

func TestIdentityFromContextWithoutPeer(t *testing.T) {
	if _, _, err := IdentityFromContext(context.Background()); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("IdentityFromContext without a peer = %v, want ErrNoIdentity", err)
	}
}

// poolOf returns a pool of the given certificates.
func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
