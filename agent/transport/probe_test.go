package transport_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tripwire-project/tripwire/agent/transport"
	"github.com/tripwire-project/tripwire/agent/transport/transporttest"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
)

// agentNotices returns a chain of n agent notices, from seq 1.
func agentNotices(n int) []batch.Entry {
	var out []batch.Entry
	prev := chain.GenesisPrev
	for seq := uint64(1); seq <= uint64(n); seq++ {
		payload := fmt.Appendf(nil, `{"seq":%d,"ts":"2026-03-14T15:56:53Z","kind":"agent","notice":{"what":"n%d"}}`, seq, seq)
		e := batch.Entry{Seq: seq, Time: time.Date(2026, 3, 14, 15, 56, 53, 0, time.UTC), Kind: "agent", Payload: payload, PrevHash: prev, Hash: chain.Hash(prev, payload)}
		out = append(out, e)
		prev = e.Hash
	}
	return out
}

// prober is an IngestService that, once an agent registers, asks it for the hash of
// each of seqs in turn, as a collector finding a fork does, while the agent sends its
// batches, and reports the answers.
type prober struct {
	tripwirev1.UnimplementedIngestServiceServer
	seqs    []uint64
	answers chan []*tripwirev1.ChainHash
}

func (p *prober) Stream(stream grpc.BidiStreamingServer[tripwirev1.StreamRequest, tripwirev1.StreamResponse]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Registered{Registered: &tripwirev1.Registered{HostId: "h"}}}); err != nil {
		return err
	}
	var got []*tripwirev1.ChainHash
	for _, seq := range p.seqs {
		if err := stream.Send(&tripwirev1.StreamResponse{Msg: &tripwirev1.StreamResponse_Command{Command: &tripwirev1.Command{
			Cmd: &tripwirev1.Command_ChainHash{ChainHash: &tripwirev1.ChainHashRequest{Seq: seq}},
		}}}); err != nil {
			return err
		}
		for { // batches and heartbeats go on meanwhile; they are not acked
			msg, err := stream.Recv()
			if err != nil {
				return err
			}
			if ch := msg.GetChainHash(); ch != nil {
				got = append(got, ch)
				break
			}
		}
	}
	p.answers <- got
	<-stream.Context().Done()
	return nil
}

// The agent answers each chain-hash probe with the hash of its own entry, or "" for an
// entry it does not hold, from the goroutine that sends its batches.
func TestShipperAnswersChainHashProbes(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	srvTLS, err := pki.LoadServerTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pki.Issue(dir, "web-1", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := transport.LoadClientTLS(hc.CAFile, hc.CertFile, hc.KeyFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	p := &prober{seqs: []uint64{700, 350, 1, 1000, 0, 1001, 5000}, answers: make(chan []*tripwirev1.ChainHash, 1)}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS.Config())))
	tripwirev1.RegisterIngestServiceServer(srv, p)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	c := transporttest.NewMemChain(agentNotices(1000))
	// Small batches and a fast heartbeat keep the sender busy while it is probed.
	sh := transport.New(c, transport.Options{Address: lis.Addr().String(), TLS: cl.Config(), Hostname: "web-1", BatchSize: 7, Heartbeat: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	defer func() { cancel(); <-done }()

	select {
	case got := <-p.answers:
		if len(got) != len(p.seqs) {
			t.Fatalf("%d answers, want %d", len(got), len(p.seqs))
		}
		for i, seq := range p.seqs {
			want := ""
			if seq >= 1 && seq <= 1000 {
				want = c.All()[seq-1].Hash
			}
			if got[i].GetSeq() != seq || got[i].GetHash() != want {
				t.Errorf("probe of seq %d answered {%d %q}, want {%d %q}", seq, got[i].GetSeq(), got[i].GetHash(), seq, want)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not answer the probes")
	}
}
