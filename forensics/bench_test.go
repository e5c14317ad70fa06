package forensics

import (
	"context"
	"io"
	"testing"

	"github.com/tripwire-project/tripwire/proto/chain"
)

func BenchmarkExportSQL(b *testing.B) {
	dir := b.TempDir()
	var ps []chain.Payload
	for i := range 20000 {
		ps = append(ps, fileEvent(i))
	}
	writeChain(b, dir, 0, ps...)
	src := dirSource(b, dir, "web-01")
	b.ResetTimer()
	for range b.N {
		if _, err := Export(context.Background(), src, io.Discard, Options{Now: fixedNow}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(20000*b.N)/b.Elapsed().Seconds(), "entries/s")
}
