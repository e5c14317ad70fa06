package ingest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/collector/ingest"
	"github.com/tripwire-project/tripwire/collector/live"
	"github.com/tripwire-project/tripwire/collector/metrics"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/testservers"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
	"github.com/tripwire-project/tripwire/storage/storetest"
)

// TestMain runs the tests, stops the servers the fleet store's tests started
// (internal/testservers), then checks that no goroutine leaked.
func TestMain(m *testing.M) {
	code := testservers.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fixture is a real collector ingest service over mTLS on a real DuckDB store.
type fixture struct {
	pkiDir  string
	addr    string
	store   storage.Store
	broker  *live.Broker
	metrics *metrics.Collector
	reg     *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, err := duckdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureOn(t, store)
}

// newFixtureOn is newFixture on store, which it closes when the test ends.
func newFixtureOn(t *testing.T, store storage.Store) *fixture {
	t.Helper()
	f := &fixture{pkiDir: filepath.Join(t.TempDir(), "pki")}
	if err := pki.Init(f.pkiDir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	srvTLS, err := pki.LoadServerTLS(f.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	f.store, f.broker = store, live.NewBroker(0)
	f.reg = prometheus.NewRegistry()
	f.metrics = metrics.New(f.reg)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS.Config())))
	tripwirev1.RegisterIngestServiceServer(gs, ingest.New(store, f.broker, pki.IdentityFromContext, "test", nil, f.metrics))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	go gs.Serve(l)
	t.Cleanup(func() { gs.Stop(); store.Close() })
	return f
}

// agentStream is a registered stream of host name.
type agentStream struct {
	hostID string
	stream tripwirev1.IngestService_StreamClient
}

func (f *fixture) connect(t *testing.T, name string) *agentStream {
	t.Helper()
	return f.connectHead(t, name, nil)
}

// connectHead registers name (issuing or re-issuing its certificate, which keeps its
// host id) with the given chain head.
func (f *fixture) connectHead(t *testing.T, name string, head *tripwirev1.ChainHead) *agentStream {
	t.Helper()
	a, err := f.register(t, name, head)
	if err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	return a
}

// register opens a stream for name and sends Register with head; it returns the
// stream, or the collector's refusal.
func (f *fixture) register(t *testing.T, name string, head *tripwirev1.ChainHead) (*agentStream, error) {
	t.Helper()
	return f.registerWatchers(t, name, head, nil)
}

// openStream opens an ingest stream to the collector at addr over mTLS with the
// certificate hc, closed when the test ends.
func openStream(t *testing.T, addr string, hc pki.HostCert) tripwirev1.IngestService_StreamClient {
	t.Helper()
	cl, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cl.Config())))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := tripwirev1.NewIngestServiceClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// registerWatchers is register with the watchers the agent reports.
func (f *fixture) registerWatchers(t *testing.T, name string, head *tripwirev1.ChainHead, watchers []*tripwirev1.WatcherStatus) (*agentStream, error) {
	t.Helper()
	hc, err := pki.Issue(f.pkiDir, name, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stream := openStream(t, f.addr, hc)
	if err := stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Register{Register: &tripwirev1.Register{
		ProtocolVersion: tripwirev1.ProtocolVersion, Host: &tripwirev1.HostFacts{Hostname: name, Watchers: watchers}, Head: head,
	}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if resp.GetRegistered().GetHostId() != hc.HostID {
		t.Fatalf("registered as %q, want the certificate's host id %q", resp.GetRegistered().GetHostId(), hc.HostID)
	}
	return &agentStream{hostID: hc.HostID, stream: stream}, nil
}

// send sends entries as one Arrow batch and returns the collector's answer.
func (a *agentStream) send(t *testing.T, entries []batch.Entry) (*tripwirev1.StreamResponse, error) {
	t.Helper()
	data, err := batch.Encode(entries)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Batch{Batch: &tripwirev1.EventBatch{
		ArrowIpc: data, FirstSeq: entries[0].Seq, LastSeq: entries[len(entries)-1].Seq,
	}}}); err != nil {
		t.Fatal(err)
	}
	return a.stream.Recv()
}

func events(c *storetest.Chain, n int) []batch.Entry {
	out := make([]batch.Entry, n)
	for i := range out {
		out[i] = c.Event(time.Now().UTC().Truncate(time.Microsecond), chain.Event{Type: chain.TypeFile, Rule: "r", Severity: chain.SeverityWarn, Path: "/etc/passwd", Op: "read", PID: int32(100 + i)})
	}
	return out
}

func TestBatchesAreAckedOnceStoredAndResendsStoredOnce(t *testing.T) {
	f := newFixture(t)
	sub := f.broker.Subscribe()
	defer sub.Close()
	a := f.connect(t, "web-01")
	entries := events(storetest.NewChain(), 10)
	for _, part := range [][]batch.Entry{entries[:6], entries[3:10]} { // the second overlaps: a resend
		resp, err := a.send(t, part)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.GetAck().GetSeq(), part[len(part)-1].Seq; got != want {
			t.Fatalf("ack %d, want %d", got, want)
		}
	}
	alerts, err := f.store.Alerts(context.Background(), storage.AlertFilter{Host: "web-01", Limit: 100})
	if err != nil || len(alerts) != 10 {
		t.Fatalf("stored %d alerts (err %v), want 10 exactly", len(alerts), err)
	}
	// Two batches of 6 and 7 entries stored, one stream open.
	if b, e, s := testutil.ToFloat64(f.metrics.Batches), testutil.ToFloat64(f.metrics.Entries), testutil.ToFloat64(f.metrics.AgentStreams); b != 2 || e != 13 || s != 1 {
		t.Errorf("metrics: batches %v entries %v streams %v, want 2 13 1", b, e, s)
	}
	for want := uint64(1); want <= 10; want++ { // each published live exactly once, in order
		select {
		case al := <-sub.C:
			if al.Seq != want {
				t.Fatalf("live alert seq %d, want %d", al.Seq, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("live alert %d not published", want)
		}
	}
	select {
	case al := <-sub.C:
		t.Fatalf("resent entry published twice: seq %d", al.Seq)
	default:
	}
}

func TestBadBatchIsRejectedWithoutAffectingOtherAgents(t *testing.T) {
	f := newFixture(t)
	bad, good := f.connect(t, "bad-host"), f.connect(t, "good-host")
	tampered := events(storetest.NewChain(), 5)
	tampered[3].Payload = []byte(strings.Replace(string(tampered[3].Payload), "/etc/passwd", "/etc/shadow", 1))
	_, err := bad.send(t, tampered)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "seq 4") {
		t.Fatalf("tampered batch: err = %v, want InvalidArgument naming seq 4", err)
	}
	resp, err := good.send(t, events(storetest.NewChain(), 3))
	if err != nil || resp.GetAck().GetSeq() != 3 {
		t.Fatalf("good agent after a bad one: %v %v", resp, err)
	}
	if seq, _, _ := f.store.Head(context.Background(), bad.hostID); seq != 0 {
		t.Fatalf("the tampered batch was stored up to seq %d", seq)
	}
	if n := testutil.ToFloat64(f.metrics.Rejected.WithLabelValues(metrics.ReasonInvalid)); n != 1 {
		t.Errorf("rejected invalid batches = %v, want 1", n)
	}
}

// Columns that disagree with the hashed payload are refused, naming seq and column.
func TestColumnsMustMatchPayload(t *testing.T) {
	f := newFixture(t)
	a := f.connect(t, "web-03")
	for name, mutate := range map[string]func(*batch.Entry){
		"kind":          func(e *batch.Entry) { e.Kind = "agent" },
		"severity":      func(e *batch.Entry) { e.Severity = chain.SeverityInfo },
		"rule_name":     func(e *batch.Entry) { e.Rule = "other" },
		"tripwire_type": func(e *batch.Entry) { e.Type = chain.TypeProcess },
		"ts":            func(e *batch.Entry) { e.Time = e.Time.Add(time.Hour) },
	} {
		entries := events(storetest.NewChain(), 3)
		mutate(&entries[1])
		_, err := a.send(t, entries)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "seq 2") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s altered: err = %v, want InvalidArgument naming seq 2 and %s", name, err, name)
		}
		a = f.connect(t, "web-03") // a refused batch ends the stream
	}
}

func TestGapAsksForResend(t *testing.T) {
	f := newFixture(t)
	a := f.connect(t, "web-02")
	entries := events(storetest.NewChain(), 6)
	resp, err := a.send(t, entries[3:])
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetCommand().GetResendFrom().GetSeq(); got != 1 {
		t.Fatalf("answer %v, want ResendFrom{1}", resp)
	}
	if resp, err = a.send(t, entries); err != nil || resp.GetAck().GetSeq() != 6 {
		t.Fatalf("after resending: %v %v", resp, err)
	}
}

func TestUnsupportedProtocolIsRefused(t *testing.T) {
	f := newFixture(t)
	hc, err := pki.Issue(f.pkiDir, "old-agent", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "localhost")
	conn, _ := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(cl.Config())))
	defer conn.Close()
	stream, err := tripwirev1.NewIngestServiceClient(conn).Stream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&tripwirev1.StreamRequest{Msg: &tripwirev1.StreamRequest_Register{Register: &tripwirev1.Register{ProtocolVersion: 0}}})
	_, err = stream.Recv()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "protocol version 0") {
		t.Fatalf("err = %v, want FailedPrecondition naming version 0", err)
	}
}
