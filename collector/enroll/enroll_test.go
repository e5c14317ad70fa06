package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/internal/testlog"
	"github.com/tripwire-project/tripwire/proto/jointoken"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is the enrolment service on a real listener with the collector's enrolment
// TLS, a real PKI and a real DuckDB store, and a clock the test moves.
type fixture struct {
	pkiDir string
	store  storage.Store
	signer *pki.Signer
	client tripwirev1.EnrollServiceClient
	log    *testlog.Buffer
	now    atomic.Pointer[time.Time]
}

func newFixture(t *testing.T, maxFailures int) *fixture {
	t.Helper()
	f := &fixture{pkiDir: filepath.Join(t.TempDir(), "pki"), log: &testlog.Buffer{}}
	start := time.Now()
	f.now.Store(&start)
	if err := pki.Init(f.pkiDir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	srvTLS, err := pki.LoadServerTLS(f.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	if f.signer, err = pki.NewSigner(f.pkiDir, 6*time.Hour); err != nil {
		t.Fatal(err)
	}
	store, err := duckdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.store = store
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS.EnrollConfig())))
	tripwirev1.RegisterEnrollServiceServer(gs, New(Options{
		Store: store, Signer: f.signer, Logger: slog.New(slog.NewTextHandler(f.log, nil)),
		MaxFailures: maxFailures, FailureWindow: time.Minute, Now: func() time.Time { return *f.now.Load() },
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(l) }()
	cas, err := pemfile.ReadCertificates("CA", filepath.Join(f.pkiDir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cas[0])
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		t.Fatal(err)
	}
	f.client = tripwirev1.NewEnrollServiceClient(conn)
	t.Cleanup(func() { conn.Close(); gs.Stop(); <-done; store.Close() })
	return f
}

// token records a token for host that expires after ttl, and returns it.
func (f *fixture) token(t *testing.T, host string, ttl time.Duration) jointoken.Token {
	t.Helper()
	tok, err := jointoken.New(f.signer.CACertificate().Raw)
	if err != nil {
		t.Fatal(err)
	}
	now := *f.now.Load()
	if err := f.store.AddJoinToken(t.Context(), storage.JoinToken{
		ID: tok.ID, SecretSHA256: tok.SecretSHA256(), Hostname: host, HostID: "7d0c4f1e-6a57-4d0e-9c1f-0d4b8f1a2e3c",
		CreatedAt: now, CreatedBy: "test", ExpiresAt: now.Add(ttl),
	}); err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) advance(d time.Duration) {
	n := f.now.Load().Add(d)
	f.now.Store(&n)
}

func (f *fixture) enroll(t *testing.T, token string, csr []byte) (*tripwirev1.EnrollResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.client.Enroll(ctx, &tripwirev1.EnrollRequest{Token: token, CsrDer: csr, ProtocolVersion: tripwirev1.ProtocolVersion, AgentVersion: "test"})
}

func csrFor(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func TestEnrollSignsTheHostsKeyOnce(t *testing.T) {
	f := newFixture(t, 0)
	tok := f.token(t, "web-07", time.Hour)
	key, csr := csrFor(t)
	resp, err := f.enroll(t, tok.String(), csr)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	certs, err := pemfile.ParseCertificates("certificate", "response", resp.GetCertificatePem())
	if err != nil {
		t.Fatal(err)
	}
	cert := certs[0]
	id, name, err := pki.HostIdentity(cert)
	if err != nil || id != "7d0c4f1e-6a57-4d0e-9c1f-0d4b8f1a2e3c" || name != "web-07" || resp.GetHostId() != id || resp.GetHostname() != name {
		t.Errorf("identity %q %q %v; response %q %q", id, name, err, resp.GetHostId(), resp.GetHostname())
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("certificate is not for the request's key")
	}
	if life := cert.NotAfter.Sub(time.Now()); life > 6*time.Hour || life < 6*time.Hour-time.Minute {
		t.Errorf("certificate valid for %v more, want the configured 6h", life)
	}
	if cas, err := pemfile.ParseCertificates("CA", "response", resp.GetCaPem()); err != nil || !cas[0].Equal(f.signer.CACertificate()) {
		t.Errorf("CA PEM is not the signing CA: %v", err)
	}
	list, err := f.store.JoinTokens(t.Context())
	if err != nil || len(list) != 1 || list[0].UsedAt == nil || !strings.HasPrefix(list[0].UsedFrom, "127.0.0.1:") {
		t.Fatalf("tokens = %+v, %v; want it spent from 127.0.0.1", list, err)
	}
	if !strings.Contains(f.log.String(), "host enrolled") {
		t.Errorf("no enrolment in the log:\n%s", f.log)
	}
	_, csr2 := csrFor(t)
	if _, err := f.enroll(t, tok.String(), csr2); status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != RefusedMessage {
		t.Fatalf("second use: %v, want PERMISSION_DENIED", err)
	}
	if !strings.Contains(f.log.String(), `reason="join token already used"`) {
		t.Errorf("log does not say the token was spent:\n%s", f.log)
	}
}

// Every bad token gets the same answer; the log alone says which check failed.
func TestEnrollRefusalsLookAlike(t *testing.T) {
	f := newFixture(t, 100)
	good := f.token(t, "db-01", time.Hour)
	expiring := f.token(t, "db-02", time.Minute)
	otherCA, err := jointoken.New([]byte("another CA"))
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := good
	wrongSecret.Secret = otherCA.Secret
	unknown := otherCA
	unknown.CAPin = good.CAPin
	foreignPin := good
	foreignPin.CAPin = otherCA.CAPin
	f.advance(2 * time.Minute)

	_, csr := csrFor(t)
	for _, tt := range []struct{ name, token, logged string }{
		{"wrong secret", wrongSecret.String(), "join token secret does not match"},
		{"unknown", unknown.String(), "no such join token"},
		{"expired", expiring.String(), "join token expired"},
		{"another CA's pin", foreignPin.String(), "the token pins another CA"},
		{"not a token", "e2e-token-0123456789", "not a tripwire join token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.enroll(t, tt.token, csr)
			if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != RefusedMessage {
				t.Fatalf("Enroll = %v, want PERMISSION_DENIED with the common message", err)
			}
			if !strings.Contains(f.log.String(), tt.logged) {
				t.Errorf("log does not say %q:\n%s", tt.logged, f.log)
			}
		})
	}
	// A wrong secret left the token usable, and the expired one was never spent.
	if _, err := f.enroll(t, good.String(), csr); err != nil {
		t.Fatalf("the good token after the refusals: %v", err)
	}
}

// A malformed request is refused without spending the token.
func TestEnrollBadRequestKeepsToken(t *testing.T) {
	f := newFixture(t, 0)
	tok := f.token(t, "app-01", time.Hour)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.enroll(t, tok.String(), rsaCSR)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "only ECDSA P-256") {
		t.Fatalf("RSA request: %v, want INVALID_ARGUMENT naming the accepted key", err)
	}
	_, csr := csrFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = f.client.Enroll(ctx, &tripwirev1.EnrollRequest{Token: tok.String(), CsrDer: csr, ProtocolVersion: 1})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "protocol version 1") {
		t.Fatalf("protocol 1: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := f.enroll(t, tok.String(), csr); err != nil {
		t.Fatalf("the token after malformed requests: %v", err)
	}
}

// After MaxFailures refusals an address waits for the window to end, whatever it sends.
func TestEnrollThrottlesFailuresPerAddress(t *testing.T) {
	f := newFixture(t, 3)
	tok := f.token(t, "web-09", time.Hour)
	bad := tok
	bad.Secret = strings.Repeat("A", 42) + "A"
	_, csr := csrFor(t)
	for i := range 3 {
		if _, err := f.enroll(t, bad.String(), csr); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, err := f.enroll(t, tok.String(), csr)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "try again in 1m0s") {
		t.Fatalf("good token after 3 failures: %v, want RESOURCE_EXHAUSTED", err)
	}
	f.advance(time.Minute)
	if _, err := f.enroll(t, tok.String(), csr); err != nil {
		t.Fatalf("good token after the window: %v", err)
	}
}
