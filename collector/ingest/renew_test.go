package ingest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/agent/transport/transporttest"
	"github.com/tripwire-project/tripwire/collector/ingest"
	"github.com/tripwire-project/tripwire/collector/live"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/internal/testlog"
	"github.com/tripwire-project/tripwire/proto/chain"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// renewFixture is a collector ingest service that checks certificates and renews them
// (or not, without a signer), over mTLS on a real DuckDB store.
type renewFixture struct {
	pkiDir  string
	addr    string
	store   storage.Store
	revoked *pki.Revocations
	signer  *pki.Signer // nil for noSigner
}

// signing says how a renewFixture signs.
type signing int

const (
	withSigner signing = iota // a signer with the CA loaded
	noSigner                  // no RenewWith at all
	idleSigner                // a signer started while ca.key was kept offline (moved to ca.key.offline)
)

func newRenewFixture(t *testing.T, validity time.Duration, how signing) *renewFixture {
	t.Helper()
	f := &renewFixture{pkiDir: filepath.Join(t.TempDir(), "pki"), revoked: &pki.Revocations{}}
	if err := pki.Init(f.pkiDir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	srvTLS, err := pki.LoadServerTLS(f.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	srvTLS.UseRevocations(f.revoked, nil)
	store, err := duckdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.store = store
	srv := ingest.New(store, live.NewBroker(0), pki.IdentityFromContext, "test", nil, nil)
	srv.CheckCertificates(pki.PeerCertificate, f.revoked)
	switch how {
	case withSigner:
		if f.signer, err = pki.NewSigner(f.pkiDir, validity); err != nil {
			t.Fatal(err)
		}
		srv.RenewWith(f.signer, nil)
	case idleSigner:
		keyFile := filepath.Join(f.pkiDir, pki.CAKeyFile)
		if err := os.Rename(keyFile, keyFile+".offline"); err != nil {
			t.Fatal(err)
		}
		if _, err := pki.NewSigner(f.pkiDir, validity); err == nil {
			t.Fatal("NewSigner loaded a CA without its key")
		}
		f.signer = pki.NewIdleSigner(f.pkiDir, validity)
		srv.RenewWith(f.signer, nil)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS.Config())))
	tripwirev1.RegisterIngestServiceServer(gs, srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(l) }()
	t.Cleanup(func() { gs.Stop(); <-done; store.Close() })
	return f
}

// open registers a stream with the certificate hc and returns it.
func (f *renewFixture) open(t *testing.T, hc pki.HostCert) tripwirev1.IngestService_StreamClient {
	t.Helper()
	stream := openStream(t, f.addr, hc)
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Register{Register: &tripwirev1.Register{
		ProtocolVersion: tripwirev1.ProtocolVersion, Host: &tripwirev1.HostFacts{Hostname: hc.Hostname},
	}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetRegistered() == nil {
		t.Fatalf("registering: %v %v", resp, err)
	}
	return stream
}

// renew sends a RenewRequest with csr and returns the RenewResult, skipping other
// commands (the central rules).
func renew(t *testing.T, stream tripwirev1.IngestService_StreamClient, csr []byte) *tripwirev1.RenewResult {
	t.Helper()
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Renew{Renew: &tripwirev1.RenewRequest{CsrDer: csr}}}); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for the renewal: %v", err)
		}
		if r := resp.GetCommand().GetRenewed(); r != nil {
			return r
		}
	}
}

func csrOf(t *testing.T, keyFile string) []byte {
	t.Helper()
	key, err := pemfile.ReadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The collector renews the stream's certificate for the same key, host id and name, with
// its configured validity; not twice a minute on one stream.
func TestRenewalSignsSameIdentityForSameKey(t *testing.T) {
	f := newRenewFixture(t, 3*time.Hour, withSigner)
	hc, err := pki.Issue(f.pkiDir, "web-01", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stream := f.open(t, hc)
	res := renew(t, stream, csrOf(t, hc.KeyFile))
	if res.GetError() != "" {
		t.Fatalf("renewal refused: %s", res.GetError())
	}
	certs, err := pemfile.ParseCertificates("certificate", "result", res.GetCertificatePem())
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	id, name, err := pki.HostIdentity(c)
	if err != nil || id != hc.HostID || name != "web-01" || pki.SerialHex(c) == hc.Serial || !c.PublicKey.(*ecdsa.PublicKey).Equal(hc.Certificate.PublicKey) {
		t.Fatalf("renewed %q %q %v serial %s; want host %s, same key, new serial", id, name, err, pki.SerialHex(c), hc.HostID)
	}
	if life := time.Until(c.NotAfter); life > 3*time.Hour || life < 3*time.Hour-time.Minute {
		t.Errorf("renewed certificate valid %v more, want the configured 3h (the issued one had a year)", life)
	}
	if again := renew(t, stream, csrOf(t, hc.KeyFile)); !strings.Contains(again.GetError(), "was renewed on this stream") {
		t.Errorf("second renewal on one stream within a minute: %+v", again)
	}
}

// A request for another key, a revoked certificate, and a collector without the CA key
// are refused with a reason; the stream goes on.
func TestRenewalRefusals(t *testing.T) {
	f := newRenewFixture(t, time.Hour, withSigner)
	hc, err := pki.Issue(f.pkiDir, "db-01", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stream := f.open(t, hc)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, other)
	if err != nil {
		t.Fatal(err)
	}
	if res := renew(t, stream, otherCSR); !strings.Contains(res.GetError(), "renewal keeps the key") || len(res.GetCertificatePem()) != 0 {
		t.Errorf("request for another key: %+v", res)
	}
	if res := renew(t, stream, []byte("not DER")); !strings.Contains(res.GetError(), "not a PKCS #10 request") {
		t.Errorf("garbage request: %+v", res)
	}
	// The stream still works: the refusals were answers, not errors.
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Heartbeat{Heartbeat: &tripwirev1.Heartbeat{}}}); err != nil {
		t.Fatal(err)
	}

	revokedHC, err := pki.Issue(f.pkiDir, "db-02", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs := f.open(t, revokedHC)
	f.revoked.Replace(map[string]string{revokedHC.Serial: "test"}, nil)
	// The revocation cuts the stream at its next message: no certificate comes back.
	if err := rs.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Renew{Renew: &tripwirev1.RenewRequest{CsrDer: csrOf(t, revokedHC.KeyFile)}}}); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := rs.Recv()
		if err != nil {
			if !strings.Contains(err.Error(), "revoked") {
				t.Errorf("revoked stream ended with %v", err)
			}
			break
		}
		if len(resp.GetCommand().GetRenewed().GetCertificatePem()) > 0 {
			t.Fatal("a revoked certificate was renewed")
		}
	}

	noCA := newRenewFixture(t, time.Hour, noSigner)
	hc3, err := pki.Issue(noCA.pkiDir, "db-03", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res := renew(t, noCA.open(t, hc3), csrOf(t, hc3.KeyFile)); !strings.Contains(res.GetError(), "does not sign certificates") {
		t.Errorf("collector without a signer: %+v", res)
	}
}

// A collector started while the CA key was kept offline refuses renewals, and renews
// once the key is back and it reloads, without a restart.
func TestRenewalStartsWhenTheCAKeyReturns(t *testing.T) {
	f := newRenewFixture(t, time.Hour, idleSigner)
	keyFile := filepath.Join(f.pkiDir, pki.CAKeyFile)
	// Issue needs the key: put it back for a moment, as an operator's pki issue would.
	if err := os.Rename(keyFile+".offline", keyFile); err != nil {
		t.Fatal(err)
	}
	hc, err := pki.Issue(f.pkiDir, "db-04", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keyFile, keyFile+".offline"); err != nil {
		t.Fatal(err)
	}
	if res := renew(t, f.open(t, hc), csrOf(t, hc.KeyFile)); !strings.Contains(res.GetError(), "does not sign certificates") {
		t.Fatalf("renewal with the CA key offline: %+v", res)
	}
	if err := f.signer.Reload(); err == nil || f.signer.Ready() {
		t.Fatalf("reload with the key still offline: %v, ready %v", err, f.signer.Ready())
	}
	if err := os.Rename(keyFile+".offline", keyFile); err != nil {
		t.Fatal(err)
	}
	if err := f.signer.Reload(); err != nil || !f.signer.Ready() {
		t.Fatalf("reload with the key in place: %v, ready %v", err, f.signer.Ready())
	}
	res := renew(t, f.open(t, hc), csrOf(t, hc.KeyFile))
	certs, err := pemfile.ParseCertificates("certificate", "renewal", res.GetCertificatePem())
	if res.GetError() != "" || err != nil || pki.SerialHex(certs[0]) == hc.Serial || pki.KeyHash(certs[0]) != pki.KeyHash(hc.Certificate) {
		t.Fatalf("renewal after the key returned: %+v (%v)", res, err)
	}
}

// The real shipper renews a short certificate over its stream before it expires: the
// file on disk changes (new serial, same key, same host id), the collector records the
// new serial, and the events written across the renewal are all stored, once.
func TestShipperRenewsOverTheStream(t *testing.T) {
	f := newRenewFixture(t, time.Hour, withSigner)
	hc, err := pki.Issue(f.pkiDir, "short-01", pki.IssueOptions{Validity: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	keyBefore, err := os.ReadFile(hc.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	ch := transporttest.NewMemChain(nil)
	events := storetest.NewChain()
	sh := transport.New(ch, transport.Options{
		Address: f.addr, TLS: cl.Config(), Hostname: "short-01", Version: "test", Renewer: cl,
		Heartbeat: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shipper: %v", err)
		}
		if t.Failed() {
			t.Logf("shipper log:\n%s", logs.String())
		}
	}()

	// Events keep coming while the certificate is renewed.
	stopWriting := make(chan struct{})
	written := make(chan struct{})
	go func() {
		defer close(written)
		for {
			ch.Add(events.Event(time.Now().UTC(), chain.Event{Type: chain.TypeFile, Rule: "decoy", Severity: chain.SeverityWarn, Path: "/srv/decoy", Op: "read", PID: int32(ch.Len() + 1)}))
			select {
			case <-stopWriting:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var renewed *x509.Certificate
	waitFor(t, "the certificate file to change", func() (bool, string) {
		certs, err := pemfile.ReadCertificates("certificate", hc.CertFile)
		if err == nil && pki.SerialHex(certs[0]) != hc.Serial {
			renewed = certs[0]
			return true, ""
		}
		return false, fmt.Sprint(err)
	})
	if time.Now().After(hc.NotAfter) {
		t.Errorf("renewed at %v, after the old certificate expired (%v)", time.Now(), hc.NotAfter)
	}
	if id, name, err := pki.HostIdentity(renewed); err != nil || id != hc.HostID || name != "short-01" {
		t.Errorf("renewed identity %q %q %v, want host id %s", id, name, err, hc.HostID)
	}
	if keyAfter, err := os.ReadFile(hc.KeyFile); err != nil || !bytes.Equal(keyAfter, keyBefore) {
		t.Error("the key file changed")
	}
	if !renewed.PublicKey.(*ecdsa.PublicKey).Equal(hc.Certificate.PublicKey) {
		t.Error("the renewed certificate is for another key")
	}
	waitFor(t, "the collector to record the new serial", func() (bool, string) {
		hosts, err := f.store.Hosts(t.Context())
		return err == nil && len(hosts) == 1 && hosts[0].CertSerial == pki.SerialHex(renewed) &&
			hosts[0].CertNotBefore != nil && hosts[0].CertNotBefore.Equal(renewed.NotBefore), fmt.Sprint(hosts, err)
	})
	// Events written after the new registration are acked over the new connection.
	after, _ := ch.Head()
	waitFor(t, "events after the renewal to be acked", func() (bool, string) { return ch.Acked() > after, fmt.Sprint(ch.Acked()) })
	close(stopWriting)
	<-written
	head, _ := ch.Head()
	waitFor(t, "every event acked", func() (bool, string) { return ch.Acked() == head, fmt.Sprint(ch.Acked()) })
	alerts, err := f.store.Alerts(t.Context(), storage.AlertFilter{Host: hc.HostID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, a := range alerts {
		seen[a.Seq]++
	}
	for seq := uint64(1); seq <= head; seq++ {
		if seen[seq] != 1 {
			t.Errorf("event seq %d stored %d times, want once", seq, seen[seq])
		}
	}
	if len(alerts) != int(head) {
		t.Errorf("%d alerts for %d events", len(alerts), head)
	}
	if st := sh.RenewalStatus(); st.LastRenewedAt.IsZero() || st.LastError != "" || !st.RenewAfter.Equal(transport.RenewAfter(renewed)) {
		t.Errorf("RenewalStatus = %+v", st)
	}
	if !strings.Contains(logs.String(), "certificate renewed") {
		t.Error("the shipper did not log the renewal")
	}
}
