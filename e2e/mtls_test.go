package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/agent/transport"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// register opens a stream to the collector with tlsCfg and sends a Register; it returns
// the collector's answer or the error.
func register(t *testing.T, addr string, tlsCfg *tls.Config, protocol uint32) (*tripwirev1.Registered, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := tripwirev1.NewIngestServiceClient(conn).Stream(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Register{Register: &tripwirev1.Register{
		ProtocolVersion: protocol, Host: &tripwirev1.HostFacts{Hostname: "probe"},
	}}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return resp.GetRegistered(), nil
}

// Agents without a certificate from the collector's CA are refused at the TLS handshake
// by the real collector; one with an unsupported protocol version is refused with
// FAILED_PRECONDITION naming both versions.
func TestCollectorRefusesUntrustedClients(t *testing.T) {
	e := newEnv(t)
	e.startCollector()
	e.agentConfig("good-host", "{name: x, type: file, paths: [/etc/hostname], severity: INFO}")
	pkiDir := filepath.Join(e.dir, "pki")
	good, err := transport.LoadClientTLS(filepath.Join(pkiDir, "good-host", "ca.crt"), filepath.Join(pkiDir, "good-host", "agent.crt"), filepath.Join(pkiDir, "good-host", "agent.key"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := register(t, e.grpcAddr, good.Config(), tripwirev1.ProtocolVersion)
	if err != nil || reg.GetHostId() == "" {
		t.Fatalf("a client with a good certificate was not registered: %v %v", reg, err)
	}

	// A certificate from another CA.
	other := t.TempDir()
	if out, err := run(t, "tripwire-collector", "pki", "init", "--dir", other); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := run(t, "tripwire-collector", "pki", "issue", "--dir", other, "--host", "good-host"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	foreign, err := transport.LoadClientTLS(filepath.Join(pkiDir, "ca.crt"), filepath.Join(other, "good-host", "agent.crt"), filepath.Join(other, "good-host", "agent.key"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	// No client certificate at all, trusting the right CA.
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	anonymous := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}

	for name, cfg := range map[string]*tls.Config{"other CA": foreign.Config(), "no certificate": anonymous} {
		_, err := register(t, e.grpcAddr, cfg, tripwirev1.ProtocolVersion)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: err = %v, want the handshake to fail (Unavailable)", name, err)
		}
	}

	_, err = register(t, e.grpcAddr, good.Config(), 99)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("protocol 99: err = %v, want FailedPrecondition", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "version 99") || !strings.Contains(msg, fmt.Sprint(tripwirev1.SupportedProtocolVersions)) {
		t.Errorf("message %q does not name both versions", msg)
	}
}
