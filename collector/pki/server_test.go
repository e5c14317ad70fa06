package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

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
	id, _, err := IdentityFromContext(stream.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return stream.Send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Registered{
		Registered: &tripwirev1.Registered{HostId: id},
	}})
}

// startServer serves IngestService with cfg on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, cfg *tls.Config) (string, *ingest) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impl := &ingest{}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	tripwirev1.RegisterIngestServiceServer(srv, impl)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String(), impl
}

// register opens a stream to addr with cfg, sends a Register and returns the host id of
// the Registered answer.
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

// clientConfig is an agent's TLS configuration built by hand from PEM files, without the
// agent's code: the collector package must not depend on it. Like the agent, it presents
// its certificate whatever CAs the server says it accepts (tls.Config.Certificates would
// quietly send none for a foreign one).
func clientConfig(t *testing.T, caFile string, pair *tls.Certificate) *tls.Config {
	t.Helper()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    poolOf(mustCert(t, caFile)),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if pair == nil {
				return &tls.Certificate{}, nil
			}
			return pair, nil
		},
	}
}

// loadPair loads a certificate and key as a tls.Certificate.
func loadPair(t *testing.T, certFile, keyFile string) *tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}

// signByHand signs tmpl with the CA in dir, bypassing Issue's rules, for certificates
// Issue would never make.
func signByHand(t *testing.T, dir string, tmpl *x509.Certificate) *tls.Certificate {
	t.Helper()
	ca, err := loadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverHandshake runs one TLS handshake between cfg as the server and client as the
// client over real TCP, and returns the server's handshake error.
func serverHandshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	result := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			result <- err
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, server)
		err = tc.HandshakeContext(ctx)
		if err == nil {
			_, err = tc.Write([]byte("ok"))
		}
		result <- err
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", lis.Addr().String(), client)
	if err == nil {
		// In TLS 1.3 the server judges the client's certificate after the client has
		// finished; the verdict reaches the client on its first read.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = conn.Read(make([]byte, 2))
		conn.Close()
	}
	return <-result
}

func TestServerAcceptsHost(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "web1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, impl := startServer(t, loader.Config())

	got, err := register(t, addr, clientConfig(t, hc.CAFile, loadPair(t, hc.CertFile, hc.KeyFile)))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got != hc.HostID {
		t.Errorf("server saw host id %q, want %q", got, hc.HostID)
	}
	if n := impl.calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

func TestServerRequiresTLS13(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "web1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	client := clientConfig(t, hc.CAFile, loadPair(t, hc.CertFile, hc.KeyFile))
	client.MaxVersion = tls.VersionTLS12
	if err := serverHandshake(t, loader.Config(), client); err == nil {
		t.Fatal("a TLS 1.2 client was accepted")
	}
}

func TestServerRefusesAtHandshake(t *testing.T) {
	dir := newPKI(t)
	hostURIs := func(ids ...string) []*url.URL {
		var us []*url.URL
		for _, id := range ids {
			us = append(us, hostURI(id))
		}
		return us
	}
	const id = "0b9f3a52-2c1e-4f7d-9d2a-5c6e7f8a9b0c"

	otherDir := newPKI(t)
	foreign, err := Issue(otherDir, "web1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}

	isVerification := func(err error) bool {
		var ve *tls.CertificateVerificationError
		return errors.As(err, &ve)
	}
	tests := []struct {
		name string
		pair func() *tls.Certificate
		// check judges the server's handshake error.
		check func(error) bool
	}{
		{
			name:  "no client certificate",
			pair:  func() *tls.Certificate { return nil },
			check: func(err error) bool { return err != nil && strings.Contains(err.Error(), "certificate") },
		},
		{
			name: "certificate from another CA",
			pair: func() *tls.Certificate { return loadPair(t, foreign.CertFile, foreign.KeyFile) },
			check: func(err error) bool {
				var ua x509.UnknownAuthorityError
				return isVerification(err) && errors.As(err, &ua)
			},
		},
		{
			name: "right CA, no host URI SAN",
			pair: func() *tls.Certificate {
				return signByHand(t, dir, &x509.Certificate{
					Subject:     pkix.Name{CommonName: "web1"},
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				})
			},
			check: func(err error) bool { return errors.Is(err, ErrNoIdentity) },
		},
		{
			name: "right CA, two host URI SANs",
			pair: func() *tls.Certificate {
				return signByHand(t, dir, &x509.Certificate{
					Subject:     pkix.Name{CommonName: "web1"},
					URIs:        hostURIs(id, "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				})
			},
			check: func(err error) bool { return errors.Is(err, ErrNoIdentity) },
		},
		{
			name: "right CA, server-auth usage only",
			pair: func() *tls.Certificate {
				return signByHand(t, dir, &x509.Certificate{
					Subject:     pkix.Name{CommonName: "web1"},
					URIs:        hostURIs(id),
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				})
			},
			check: isVerification,
		},
		{
			name: "right CA, any usage but not client auth",
			pair: func() *tls.Certificate {
				return signByHand(t, dir, &x509.Certificate{
					Subject:     pkix.Name{CommonName: "web1"},
					URIs:        hostURIs(id),
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
				})
			},
			check: func(err error) bool { return err != nil && !isVerification(err) },
		},
		{
			name: "right CA, expired",
			pair: func() *tls.Certificate {
				return signByHand(t, dir, &x509.Certificate{
					Subject:     pkix.Name{CommonName: "web1"},
					URIs:        hostURIs(id),
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
					NotBefore:   time.Now().Add(-48 * time.Hour),
					NotAfter:    time.Now().Add(-24 * time.Hour),
				})
			},
			check: func(err error) bool {
				var ie x509.CertificateInvalidError
				return errors.As(err, &ie) && ie.Reason == x509.Expired
			},
		},
		{
			name: "the server's own certificate",
			pair: func() *tls.Certificate {
				return loadPair(t, filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
			},
			check: isVerification,
		},
	}

	loader, err := LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, impl := startServer(t, loader.Config())
	caFile := filepath.Join(dir, CACertFile)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pair := tt.pair()

			// Through gRPC: the call fails as a transport failure and no handler runs.
			before := impl.calls.Load()
			_, err := register(t, addr, clientConfig(t, caFile, pair))
			if status.Code(err) != codes.Unavailable {
				t.Errorf("RPC error = %v, want code Unavailable", err)
			}
			if n := impl.calls.Load(); n != before {
				t.Errorf("handler ran %d times for a refused client", n-before)
			}

			// At the TLS layer: the server's handshake itself fails, for the right reason.
			serr := serverHandshake(t, loader.Config(), clientConfig(t, caFile, pair))
			t.Logf("RPC: %v; server handshake: %v", err, serr)
			if !tt.check(serr) {
				t.Errorf("server handshake error = %v (%T)", serr, serr)
			}
		})
	}
}

func TestServerReload(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "web1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startServer(t, loader.Config())

	// seen returns the serial of the server certificate a new connection is shown.
	seen := func() *big.Int {
		t.Helper()
		var serial atomic.Pointer[big.Int]
		cfg := clientConfig(t, hc.CAFile, loadPair(t, hc.CertFile, hc.KeyFile))
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			serial.Store(cs.PeerCertificates[0].SerialNumber)
			return nil
		}
		if _, err := register(t, addr, cfg); err != nil {
			t.Fatalf("Register: %v", err)
		}
		return serial.Load()
	}

	old := loader.Certificate().SerialNumber
	if got := seen(); got.Cmp(old) != 0 {
		t.Fatalf("server showed serial %x, want %x", got, old)
	}
	if err := IssueServer(dir, ServerOptions{Names: []string{"127.0.0.1", "collector.test"}}); err != nil {
		t.Fatal(err)
	}
	// Until Reload, the running server keeps its certificate.
	if got := seen(); got.Cmp(old) != 0 {
		t.Fatalf("server changed certificate without Reload")
	}
	if err := loader.Reload(); err != nil {
		t.Fatal(err)
	}
	cur := loader.Certificate().SerialNumber
	if cur.Cmp(old) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	if got := seen(); got.Cmp(cur) != 0 {
		t.Fatalf("after Reload the server showed serial %x, want %x", got, cur)
	}

	// A broken reload is refused and the server keeps working with what it had.
	other := newPKI(t)
	keyData, err := os.ReadFile(filepath.Join(other, ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ServerKeyFile), keyData, 0o600); err != nil {
		t.Fatal(err)
	}
	err = loader.Reload()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ServerKeyFile)) {
		t.Fatalf("Reload with a mismatched key: %v, want an error naming server.key", err)
	}
	if got := seen(); got.Cmp(cur) != 0 {
		t.Fatalf("after a failed Reload the server showed serial %x, want %x", got, cur)
	}
}

func TestServerReloadsCABundle(t *testing.T) {
	// Rolling to a new CA: the collector trusts both while hosts are issued again.
	dir, next := newPKI(t), newPKI(t)
	oldHost, err := Issue(dir, "web1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newHost, err := Issue(next, "web1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startServer(t, loader.Config())
	newClient := clientConfig(t, oldHost.CAFile, loadPair(t, newHost.CertFile, newHost.KeyFile))
	if _, err := register(t, addr, newClient); status.Code(err) != codes.Unavailable {
		t.Fatalf("host of an untrusted CA: %v, want Unavailable", err)
	}

	bundle, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	nextCA, err := os.ReadFile(filepath.Join(next, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CACertFile), append(bundle, nextCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := loader.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := register(t, addr, newClient); err != nil || got != newHost.HostID {
		t.Fatalf("host of the added CA: %q, %v", got, err)
	}
	oldClient := clientConfig(t, oldHost.CAFile, loadPair(t, oldHost.CertFile, oldHost.KeyFile))
	if got, err := register(t, addr, oldClient); err != nil || got != oldHost.HostID {
		t.Fatalf("host of the old CA: %q, %v", got, err)
	}
}

func TestServerTLSErrors(t *testing.T) {
	dir := newPKI(t)
	if _, err := LoadServerTLS(t.TempDir()); err == nil {
		t.Error("LoadServerTLS on an empty directory succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, ServerCertFile), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadServerTLS(dir)
	if !errors.Is(err, ErrNotPEM) || !strings.Contains(err.Error(), filepath.Join(dir, ServerCertFile)) {
		t.Errorf("LoadLoadServerTLS with a junk server.crt: %v", err)
	}
}

// TestServerRefusesRevokedKey: renewal keeps the key, so a host holds certificates with
// one key and several serials. Revoking the serial alone leaves the others good;
// revoking the key refuses every certificate with it, while another host's passes.
func TestServerRefusesRevokedKey(t *testing.T) {
	dir := newPKI(t)
	hc, err := Issue(dir, "web1", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issued := loadPair(t, hc.CertFile, hc.KeyFile)
	signer, err := NewSigner(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(newCSR(t, issued.PrivateKey.(crypto.Signer), "web1"))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := signer.SignHost(csr, hc.HostID, "web1") // what a renewal over the stream signs
	if err != nil {
		t.Fatal(err)
	}
	renewed := &tls.Certificate{Certificate: [][]byte{sc.Certificate.Raw}, PrivateKey: issued.PrivateKey, Leaf: sc.Certificate}
	if KeyHash(sc.Certificate) != KeyHash(hc.Certificate) || SerialHex(sc.Certificate) == SerialHex(hc.Certificate) {
		t.Fatal("the renewed certificate should have the key and not the serial of the issued one")
	}
	other, err := Issue(dir, "web2", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}

	loader, err := LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	revoked := &Revocations{}
	var told atomic.Int32 // refusals reported to the hook
	loader.UseRevocations(revoked, func(_ *x509.Certificate, _, from string) {
		if strings.HasPrefix(from, "127.0.0.1:") {
			told.Add(1)
		}
	})
	handshake := func(pair *tls.Certificate) error {
		return serverHandshake(t, loader.Config(), clientConfig(t, hc.CAFile, pair))
	}
	pairs := map[string]*tls.Certificate{"issued": issued, "renewed": renewed, "other host": loadPair(t, other.CertFile, other.KeyFile)}
	check := func(when string, refused map[string]bool) {
		t.Helper()
		told.Store(0)
		defer func() {
			if int(told.Load()) != len(refused) {
				t.Errorf("%s: %d refusals reported, want %d", when, told.Load(), len(refused))
			}
		}()
		for name, pair := range pairs {
			err := handshake(pair)
			switch {
			case refused[name] && (err == nil || !strings.Contains(err.Error(), "revoked")):
				t.Errorf("%s: the %s certificate: handshake error %v, want it refused as revoked", when, name, err)
			case !refused[name] && err != nil:
				t.Errorf("%s: the %s certificate refused: %v", when, name, err)
			}
		}
	}
	check("nothing revoked", nil)

	revoked.Replace(map[string]string{SerialHex(sc.Certificate): "by serial"}, nil)
	check("the renewed serial revoked", map[string]bool{"renewed": true})

	revoked.Replace(map[string]string{SerialHex(sc.Certificate): "by serial"}, map[string]string{KeyHash(sc.Certificate): "by key"})
	check("its key revoked", map[string]bool{"renewed": true, "issued": true})
	if err := handshake(issued); err == nil || !strings.Contains(err.Error(), "key is revoked: by key") {
		t.Errorf("the issued certificate's refusal %v does not say its key is revoked", err)
	}
}
