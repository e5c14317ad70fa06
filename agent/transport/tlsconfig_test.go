// The tests of the agent's TLS side run against the collector's real PKI and server
// configuration, so they live in an external test package: only this test binary links
// collector/pki, never the agent.
package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"os"
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

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/collector/pki"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ingest is the smallest IngestService: it reads the Register and answers Registered
// with the host id the TLS handshake established.
type ingest struct {
	tripwirev1.UnimplementedIngestServiceServer
	calls atomic.Int32
}

func (s *ingest) Stream(stream grpc.BidiStreamingServer[tripwirev1.StreamRequest, tripwirev1.StreamResponse]) error {
	s.calls.Add(1)
	if _, err := stream.Recv(); err != nil {
		return err
	}
	id, _, err := pki.IdentityFromContext(stream.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return stream.Send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Registered{
		Registered: &tripwirev1.Registered{HostId: id},
	}})
}

// collector is a PKI directory and a gRPC server using it on 127.0.0.1:0.
type collector struct {
	dir  string
	addr string
	impl *ingest
}

// startCollector makes a PKI in a temporary directory and serves IngestService with it
// until the test ends.
func startCollector(t *testing.T) *collector {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	loader, err := pki.LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impl := &ingest{}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(loader.Config())))
	tripwirev1.RegisterIngestServiceServer(srv, impl)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &collector{dir: dir, addr: lis.Addr().String(), impl: impl}
}

// issue issues a host certificate from the collector's CA.
func (c *collector) issue(t *testing.T, hostname string, opts pki.IssueOptions) pki.HostCert {
	t.Helper()
	hc, err := pki.Issue(c.dir, hostname, opts)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// register dials addr with cfg, opens a stream, sends a Register and returns the host id
// of the Registered answer.
func register(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := tripwirev1.NewIngestServiceClient(conn).Stream(ctx)
	if err != nil {
		return "", err
	}
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Register{Register: &tripwirev1.Register{ProtocolVersion: tripwirev1.ProtocolVersion}}}); err != nil {
		// A failed Send hides the real status; Recv reports it.
		_, err = stream.Recv()
		return "", err
	}
	resp, err := stream.Recv()
	if err != nil {
		return "", err
	}
	return resp.GetRegistered().GetHostId(), nil
}

func TestClientTLSRegisters(t *testing.T) {
	c := startCollector(t)
	hc := c.issue(t, "web1", pki.IssueOptions{})

	for _, serverName := range []string{"", c.addr, "127.0.0.1"} {
		t.Run("server name "+serverName, func(t *testing.T) {
			loader, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, serverName)
			if err != nil {
				t.Fatal(err)
			}
			cfg := loader.Config()
			if cfg.MinVersion != tls.VersionTLS13 {
				t.Errorf("MinVersion = %x, want TLS 1.3", cfg.MinVersion)
			}
			got, err := register(t, c.addr, cfg)
			if err != nil {
				t.Fatalf("Register: %v", err)
			}
			if got != hc.HostID {
				t.Errorf("collector saw host id %q, want %q", got, hc.HostID)
			}
		})
	}
}

func TestClientTLSServerName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"collector.example.com", "collector.example.com"},
		{"collector.example.com:7443", "collector.example.com"},
		{"10.0.0.7:7443", "10.0.0.7"},
		{"[::1]:7443", "::1"},
		{"[::1]", "::1"},
		{"::1", "::1"},
	}
	c := startCollector(t)
	hc := c.issue(t, "web1", pki.IssueOptions{})
	for _, tt := range tests {
		loader, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := loader.Config().ServerName; got != tt.want {
			t.Errorf("LoadClientTLS(..., %q).ServerName = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestClientTLSRefusesWrongCollector(t *testing.T) {
	c := startCollector(t)
	hc := c.issue(t, "web1", pki.IssueOptions{})

	// A name the collector's certificate does not carry.
	loader, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "elsewhere.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := register(t, c.addr, loader.Config()); status.Code(err) != codes.Unavailable {
		t.Errorf("collector under the wrong name: %v, want Unavailable", err)
	}

	// A collector whose certificate comes from a CA the agent does not trust, though the
	// agent's own certificate is good there.
	other := startCollector(t)
	foreign := other.issue(t, "web1", pki.IssueOptions{})
	loader, err = transport.LoadClientTLS(foreign.CAFile, hc.CertFile, hc.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := register(t, c.addr, loader.Config()); status.Code(err) != codes.Unavailable {
		t.Errorf("collector of an untrusted CA: %v, want Unavailable", err)
	}
	if n := c.impl.calls.Load(); n != 0 {
		t.Errorf("handler ran %d times", n)
	}
}

func TestClientTLSRefusedByCollector(t *testing.T) {
	c := startCollector(t)
	trusted := c.issue(t, "web1", pki.IssueOptions{})
	other := startCollector(t)
	foreign := other.issue(t, "web1", pki.IssueOptions{})

	// The agent trusts the collector, but the collector does not trust the agent.
	loader, err := transport.LoadClientTLS(trusted.CAFile, foreign.CertFile, foreign.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := register(t, c.addr, loader.Config()); status.Code(err) != codes.Unavailable {
		t.Errorf("agent of another CA: %v, want Unavailable", err)
	}
	if n := c.impl.calls.Load(); n != 0 {
		t.Errorf("handler ran %d times for a refused agent", n)
	}
}

func TestClientReload(t *testing.T) {
	c := startCollector(t)
	first := c.issue(t, "web1", pki.IssueOptions{})
	loader, err := transport.LoadClientTLS(first.CAFile, first.CertFile, first.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := loader.Config()
	if got, err := register(t, c.addr, cfg); err != nil || got != first.HostID {
		t.Fatalf("before reload: %q, %v", got, err)
	}

	// Issue the host again under a new id, which makes the certificate in use visible
	// from the collector's side.
	second := c.issue(t, "web1", pki.IssueOptions{NewHostID: true})
	if got, err := register(t, c.addr, cfg); err != nil || got != first.HostID {
		t.Fatalf("new files, no reload: %q, %v; want the old id %q", got, err, first.HostID)
	}
	if err := loader.Reload(); err != nil {
		t.Fatal(err)
	}
	if loader.Certificate().SerialNumber.Text(16) != second.Serial {
		t.Errorf("Certificate() serial %x, want %s", loader.Certificate().SerialNumber, second.Serial)
	}
	// The configuration taken before the reload presents the new certificate too.
	if got, err := register(t, c.addr, cfg); err != nil || got != second.HostID {
		t.Fatalf("after reload: %q, %v; want %q", got, err, second.HostID)
	}

	// A reload of a broken pair is refused and the agent keeps the pair it had.
	other := startCollector(t)
	stray := other.issue(t, "web1", pki.IssueOptions{})
	data, err := os.ReadFile(stray.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(second.KeyFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loader.Reload(); !errors.Is(err, transport.ErrKeyMismatch) {
		t.Fatalf("Reload with a mismatched key: %v, want ErrKeyMismatch", err)
	}
	if got, err := register(t, c.addr, loader.Config()); err != nil || got != second.HostID {
		t.Fatalf("after a failed reload: %q, %v; want %q", got, err, second.HostID)
	}
}

func TestClientTLSErrors(t *testing.T) {
	c := startCollector(t)
	hc := c.issue(t, "web1", pki.IssueOptions{})
	other := c.issue(t, "web2", pki.IssueOptions{})
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("this is not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	serverCert, serverKey := filepath.Join(c.dir, pki.ServerCertFile), filepath.Join(c.dir, pki.ServerKeyFile)

	tests := []struct {
		name           string
		ca, cert, key  string
		wantIs         error
		wantFile, want string
	}{
		{name: "CA missing", ca: missing, cert: hc.CertFile, key: hc.KeyFile, wantIs: fs.ErrNotExist, wantFile: missing, want: "CA file"},
		{name: "CA not PEM", ca: junk, cert: hc.CertFile, key: hc.KeyFile, wantIs: transport.ErrNotPEM, wantFile: junk, want: "CA file"},
		{name: "CA is a directory", ca: dir, cert: hc.CertFile, key: hc.KeyFile, wantFile: dir, want: "CA file"},
		{name: "CA file holds a key", ca: hc.KeyFile, cert: hc.CertFile, key: hc.KeyFile, wantIs: transport.ErrNotPEM, wantFile: hc.KeyFile, want: "CA file"},
		{name: "certificate missing", ca: hc.CAFile, cert: missing, key: hc.KeyFile, wantIs: fs.ErrNotExist, wantFile: missing, want: "certificate file"},
		{name: "certificate not PEM", ca: hc.CAFile, cert: junk, key: hc.KeyFile, wantIs: transport.ErrNotPEM, wantFile: junk, want: "certificate file"},
		{name: "key missing", ca: hc.CAFile, cert: hc.CertFile, key: missing, wantIs: fs.ErrNotExist, wantFile: missing, want: "key file"},
		{name: "key not PEM", ca: hc.CAFile, cert: hc.CertFile, key: junk, wantIs: transport.ErrNotPEM, wantFile: junk, want: "key file"},
		{name: "key file holds a certificate", ca: hc.CAFile, cert: hc.CertFile, key: hc.CertFile, wantIs: transport.ErrNotPEM, wantFile: hc.CertFile, want: "key file"},
		{name: "key of another host", ca: hc.CAFile, cert: hc.CertFile, key: other.KeyFile, wantIs: transport.ErrKeyMismatch, wantFile: other.KeyFile, want: "key file"},
		{name: "server certificate", ca: hc.CAFile, cert: serverCert, key: serverKey, wantFile: serverCert, want: "not a client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transport.LoadClientTLS(tt.ca, tt.cert, tt.key, "")
			if err == nil {
				t.Fatal("LoadClientTLS succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantFile) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s %s", err, tt.want, tt.wantFile)
			}
		})
	}
}
