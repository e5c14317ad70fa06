package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/internal/pemfile"
)

// newCSR returns a DER signing request for key, with common name cn.
func newCSR(t *testing.T, key crypto.Signer, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseCSR(t *testing.T) {
	good := newCSR(t, p256(t), "web-01")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A request whose signed content was changed after signing: the common name's
	// bytes are inside what the signature covers.
	tampered := newCSR(t, p256(t), "tamper-me")
	i := bytes.Index(tampered, []byte("tamper-me"))
	if i < 0 {
		t.Fatal("common name not found in the DER")
	}
	tampered[i] = 'T'

	tests := []struct {
		name    string
		der     []byte
		wantErr string // "" for success
	}{
		{"ECDSA P-256", good, ""},
		{"empty", nil, "empty"},
		{"not DER", []byte("-----BEGIN CERTIFICATE REQUEST-----"), "not a PKCS #10 request"},
		{"too large", make([]byte, maxCSRBytes+1), "more than"},
		{"ECDSA P-384", newCSR(t, p384, "web-01"), "the key is ECDSA P-384; only ECDSA P-256"},
		{"RSA", newCSR(t, rsaKey, "web-01"), "the key is *rsa.PublicKey; only ECDSA P-256"},
		{"Ed25519", newCSR(t, edKey, "web-01"), "the key is ed25519.PublicKey; only ECDSA P-256"},
		{"bad signature", tampered, "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.der)
			if tt.wantErr == "" {
				if err != nil || csr == nil {
					t.Fatalf("ParseCSR = %v, %v; want a request", csr, err)
				}
				return
			}
			var ce *CSRError
			if !errors.As(err, &ce) || !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseCSR error = %v, want a CSRError containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckRenewalKey(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "web-01", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := pemfile.ReadPrivateKey(hc.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	same, err := ParseCSR(newCSR(t, key, "anything"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRenewalKey(same, hc.Certificate); err != nil {
		t.Errorf("request for the certificate's own key: %v", err)
	}
	other, err := ParseCSR(newCSR(t, p256(t), "web-01"))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckRenewalKey(other, hc.Certificate)
	if !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), "renewal keeps the key") || !strings.Contains(err.Error(), hc.Serial) {
		t.Errorf("request for another key: %v, want a CSRError naming the serial", err)
	}
}

func TestSignerSignsInIssuesShape(t *testing.T) {
	dir := newPKI(t)
	s, err := NewSigner(dir, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key := p256(t)
	csr, err := ParseCSR(newCSR(t, key, "ignored-name"))
	if err != nil {
		t.Fatal(err)
	}
	const id = "2b0c4f1e-6a57-4d0e-9c1f-0d4b8f1a2e3c"
	sc, err := s.SignHost(csr, id, "db-02")
	if err != nil {
		t.Fatal(err)
	}
	cert := sc.Certificate
	certs, err := pemfile.ParseCertificates("certificate", "PEM", sc.PEM)
	if err != nil || !certs[0].Equal(cert) {
		t.Fatalf("PEM does not hold the certificate: %v", err)
	}
	ca := mustCert(t, filepath.Join(dir, CACertFile))
	if _, err := cert.Verify(x509.VerifyOptions{Roots: poolOf(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("signed certificate does not verify for client auth: %v", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		t.Error("certificate is not for the request's key")
	}
	if gotID, name, err := HostIdentity(cert); err != nil || gotID != id || name != "db-02" {
		t.Errorf("HostIdentity = %q %q %v; want the token's id and name, not the request's", gotID, name, err)
	}
	// The same shape as pki issue's: compare everything but key, serial and dates.
	hc, err := Issue(dir, "db-02", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issued := hc.Certificate
	if cert.KeyUsage != issued.KeyUsage || !slices.Equal(cert.ExtKeyUsage, issued.ExtKeyUsage) || cert.IsCA ||
		cert.Subject.String() != issued.Subject.String() || len(cert.URIs) != 1 {
		t.Errorf("signed %v %v %q %v, issued %v %v %q", cert.KeyUsage, cert.ExtKeyUsage, cert.Subject, cert.URIs, issued.KeyUsage, issued.ExtKeyUsage, issued.Subject)
	}
	if life := time.Until(cert.NotAfter); life < 2*time.Hour-time.Minute || life > 2*time.Hour {
		t.Errorf("NotAfter in %v, want 2h", life)
	}
	if got := s.CAFingerprint(); got != sha256.Sum256(ca.Raw) {
		t.Error("CAFingerprint is not the SHA-256 of ca.crt's DER")
	}
	if _, err := s.SignHost(csr, id, "../etc"); err == nil {
		t.Error("signed a certificate for a bad host name")
	}
}

// A short certificate starts a tenth of its validity ago, not 5 minutes: otherwise it
// would be due for renewal (two thirds of its lifetime) the moment it is issued.
func TestShortCertificateBackdate(t *testing.T) {
	dir := newPKI(t)
	s, err := NewSigner(dir, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(newCSR(t, p256(t), "x"))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := s.SignHost(csr, "2b0c4f1e-6a57-4d0e-9c1f-0d4b8f1a2e3c", "short")
	if err != nil {
		t.Fatal(err)
	}
	c := sc.Certificate
	if life := c.NotAfter.Sub(c.NotBefore); life < time.Minute || life > 67*time.Second {
		t.Errorf("lifetime %v, want 1m plus a 6 s backdate", life)
	}
	renewAt := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
	if !renewAt.After(time.Now().Add(30 * time.Second)) {
		t.Errorf("renewal due at %v, less than 30 s from now", renewAt)
	}
}

func TestCheckAgentCertValidity(t *testing.T) {
	now := time.Now()
	ca := &x509.Certificate{NotAfter: now.Add(48 * time.Hour)}
	tests := []struct {
		name     string
		validity time.Duration
		wantErr  string
	}{
		{"a day", 24 * time.Hour, ""},
		{"a minute", time.Minute, ""},
		{"zero", 0, "must be positive"},
		{"negative", -time.Hour, "must be positive"},
		{"seconds", 30 * time.Second, "at least 1m"},
		{"past the CA", 48 * time.Hour, "shorter than the CA's remaining life"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckAgentCertValidity(tt.validity, ca, now)
			var fe *InvalidFieldError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && (!errors.As(err, &fe) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want an InvalidFieldError containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := NewSigner(newPKI(t), 20*CAValidity); err == nil {
		t.Error("NewSigner accepted a validity past the CA's")
	}
	if _, err := NewSigner(t.TempDir(), time.Hour); err == nil {
		t.Error("NewSigner without a CA succeeded")
	}
}

// The enrolment listener needs no client certificate and presents the CA in its chain,
// so that a host can check the CA's fingerprint against its token.
func TestEnrollConfig(t *testing.T) {
	dir := newPKI(t)
	srv, err := LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv.EnrollConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	ca := mustCert(t, filepath.Join(dir, CACertFile))
	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: poolOf(ca), ServerName: "localhost", MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("handshake without a client certificate: %v", err)
	}
	peers := conn.ConnectionState().PeerCertificates
	conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if len(peers) != 2 || !peers[1].Equal(ca) {
		t.Fatalf("presented %d certificates, want the server's and the CA", len(peers))
	}
	// The ingest configuration still insists on a client certificate.
	l2, err := tls.Listen("tcp", "127.0.0.1:0", srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	go func() {
		c, err := l2.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c2, err := tls.Dial("tcp", l2.Addr().String(), &tls.Config{RootCAs: poolOf(ca), ServerName: "localhost", MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
	if err == nil {
		// TLS 1.3 clients learn of the refusal at their first read.
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c2.Read(make([]byte, 1))
		c2.Close()
	}
	var netErr net.Error
	if err == nil || errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("ingest listener accepted a client without a certificate: %v", err)
	}
}

// An idle signer signs nothing until a Reload finds the CA.
func TestIdleSigner(t *testing.T) {
	dir := newPKI(t)
	s := NewIdleSigner(dir, time.Hour)
	csr, err := ParseCSR(newCSR(t, p256(t), "web1"))
	if err != nil {
		t.Fatal(err)
	}
	const id = "2b0c4f1e-6a57-4d0e-9c1f-0d4b8f1a2e3c"
	if _, err := s.SignHost(csr, id, "web1"); s.Ready() || !errors.Is(err, errNoCA) {
		t.Fatalf("idle signer: ready %v, SignHost error %v", s.Ready(), err)
	}
	if err := s.Reload(); err != nil || !s.Ready() {
		t.Fatalf("Reload: %v, ready %v", err, s.Ready())
	}
	if sc, err := s.SignHost(csr, id, "web1"); err != nil || !publicKeysEqual(sc.Certificate.PublicKey, csr.PublicKey) {
		t.Fatalf("SignHost after Reload: %v", err)
	}
}
