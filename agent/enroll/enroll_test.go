// The host's side of enrolment is tested against the collector's real enrolment service
// and TLS, so the tests live in an external package: only this test binary links
// collector code, never the agent.
package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/tripwire-project/tripwire/agent/enroll"
	"github.com/tripwire-project/tripwire/agent/transport"
	collectorenroll "github.com/tripwire-project/tripwire/collector/enroll"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/internal/testlog"
	"github.com/tripwire-project/tripwire/proto/jointoken"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is a PKI and the collector's enrolment service on 127.0.0.1:0.
type collector struct {
	pkiDir string
	addr   string
	store  storage.Store
	signer *pki.Signer
	log    *testlog.Buffer
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{pkiDir: filepath.Join(t.TempDir(), "pki"), log: &testlog.Buffer{}}
	if err := pki.Init(c.pkiDir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	srvTLS, err := pki.LoadServerTLS(c.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	if c.signer, err = pki.NewSigner(c.pkiDir, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if c.store, err = duckdb.Open("", nil); err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS.EnrollConfig())))
	tripwirev1.RegisterEnrollServiceServer(gs, collectorenroll.New(collectorenroll.Options{
		Store: c.store, Signer: c.signer, Logger: slog.New(slog.NewTextHandler(c.log, nil)),
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(l) }()
	t.Cleanup(func() { gs.Stop(); <-done; c.store.Close() })
	return c
}

// token records a token for host, as `pki token` does, and returns it printed.
func (c *collector) token(t *testing.T, host string) string {
	t.Helper()
	tok, err := jointoken.New(c.signer.CACertificate().Raw)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := c.store.AddJoinToken(t.Context(), storage.JoinToken{
		ID: tok.ID, SecretSHA256: tok.SecretSHA256(), Hostname: host, HostID: "5a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
		CreatedAt: now, CreatedBy: "test", ExpiresAt: now.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

// used reports whether any token was redeemed.
func (c *collector) used(t *testing.T) bool {
	t.Helper()
	list, err := c.store.JoinTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range list {
		if tk.UsedAt != nil {
			return true
		}
	}
	return false
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestEnroll(t *testing.T) {
	c := startCollector(t)
	dir := filepath.Join(t.TempDir(), "etc", "pki")
	r, err := enroll.Enroll(t.Context(), enroll.Options{Collector: c.addr, Token: c.token(t, "web-04"), Dir: dir})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if r.Hostname != "web-04" || r.HostID != "5a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d" || r.KeyFile != filepath.Join(dir, "agent.key") {
		t.Errorf("result %+v", r)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory mode %o, want 0700", m)
	}
	if m := mode(t, r.KeyFile); m != 0o600 {
		t.Errorf("key mode %o, want 0600", m)
	}
	key, err := pemfile.ReadPrivateKey(r.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pemfile.ReadCertificates("certificate", r.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if !certs[0].PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("agent.crt is not for agent.key")
	}
	if id, name, err := pki.HostIdentity(certs[0]); err != nil || id != r.HostID || name != "web-04" || pki.SerialHex(certs[0]) != r.Serial {
		t.Errorf("certificate identity %q %q %v", id, name, err)
	}
	cas, err := pemfile.ReadCertificates("CA", r.CAFile)
	if err != nil || !cas[0].Equal(c.signer.CACertificate()) {
		t.Errorf("ca.crt is not the collector's CA: %v", err)
	}
	// The files are what the agent loads at start.
	if _, err := transport.LoadClientTLS(r.CAFile, r.CertFile, r.KeyFile, ""); err != nil {
		t.Fatalf("the agent cannot load the enrolled files: %v", err)
	}

	// A second enrolment into the same directory is refused before anything is sent.
	second := c.token(t, "web-04")
	_, err = enroll.Enroll(t.Context(), enroll.Options{Collector: c.addr, Token: second, Dir: dir})
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("enrolling over an existing key: %v, want fs.ErrExist", err)
	}
	list, _ := c.store.JoinTokens(t.Context())
	if list[0].UsedAt != nil {
		t.Error("the refused enrolment spent its token")
	}
	r2, err := enroll.Enroll(t.Context(), enroll.Options{Collector: c.addr, Token: second, Dir: dir, Force: true})
	if err != nil || r2.Serial == r.Serial {
		t.Fatalf("enrolling with --force: %+v, %v", r2, err)
	}
	if key2, err := pemfile.ReadPrivateKey(r.KeyFile); err != nil || key2.Public().(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("--force kept the old key")
	}
}

// A token whose pin is not the server's CA, or a server that does not verify for the
// dialled name, is refused during the handshake: the collector never sees the call.
func TestEnrollRefusesUnpinnedCollector(t *testing.T) {
	c := startCollector(t)
	other := startCollector(t)
	foreign := other.token(t, "web-05") // pins the other collector's CA
	good := c.token(t, "web-05")
	for _, tt := range []struct {
		name, token, serverName, want string
	}{
		{"another CA's token", foreign, "", "none of the certificates it presented is the pinned CA"},
		{"a name the certificate lacks", good, "collector.example.com", "does not verify against the pinned CA"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := enroll.Enroll(t.Context(), enroll.Options{Collector: c.addr, Token: tt.token, Dir: dir, ServerName: tt.serverName})
			var pe *enroll.PinMismatchError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "nothing was sent") {
				t.Fatalf("Enroll = %v, want a PinMismatchError saying %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a refused enrolment wrote %d files", len(entries))
			}
		})
	}
	if c.used(t) || strings.Contains(c.log.String(), "enrolment") {
		t.Errorf("the collector saw an enrolment attempt:\n%s", c.log)
	}
}

func TestEnrollErrors(t *testing.T) {
	c := startCollector(t)
	tok := c.token(t, "web-06")
	if _, err := enroll.Enroll(t.Context(), enroll.Options{Collector: c.addr, Token: tok, Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	_, err := enroll.Enroll(t.Context(), enroll.Options{Collector: c.addr, Token: tok, Dir: t.TempDir()})
	var re *enroll.RefusedError
	if !errors.As(err, &re) || re.Code != codes.PermissionDenied || !strings.Contains(err.Error(), "pki token") {
		t.Fatalf("a spent token: %v, want a RefusedError PERMISSION_DENIED", err)
	}
	var pe *jointoken.ParseError
	if _, err := enroll.Enroll(t.Context(), enroll.Options{Collector: c.addr, Token: "change-me", Dir: t.TempDir()}); !errors.As(err, &pe) {
		t.Fatalf("a malformed token: %v, want a jointoken.ParseError", err)
	}
	if _, err := enroll.Enroll(t.Context(), enroll.Options{Collector: "collector", Token: tok, Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not host:port") {
		t.Fatalf("an address without a port: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := enroll.Enroll(ctx, enroll.Options{Collector: addr, Token: tok, Dir: t.TempDir(), Timeout: 2 * time.Second}); err == nil {
		t.Fatal("enrolling at a closed port succeeded")
	}
}
