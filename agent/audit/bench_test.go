package audit

import (
	"sync"
	"testing"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// BenchmarkAppend measures group-fsync appends of ~400-byte events: 4 producers, 256
// payloads per call. Reported per event.
func BenchmarkAppend(b *testing.B) {
	const producers, group = 4, 256
	l := openLog(b, b.TempDir(), 0)
	ps := make([][]chain.Payload, producers)
	for p := range ps {
		ps[p] = make([]chain.Payload, group)
		for i := range ps[p] {
			ps[p][i] = eventPayload(p*group + i)
		}
	}
	calls := (b.N + producers*group - 1) / (producers * group)
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if _, err := l.Append(ps[p]...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(calls*producers*group)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(calls*producers*group)/float64(l.fsyncs.Load()), "events/fsync")
	b.ReportMetric(float64(l.fsyncNs.Load())/float64(b.Elapsed()), "fsync-busy")
}

// BenchmarkVerify measures Verify over a log of 200k entries. Reported per entry.
func BenchmarkVerify(b *testing.B) {
	const n = 200_000
	dir := b.TempDir()
	l := openLog(b, dir, 0)
	appendEvents(b, l, 0, n, 4096)
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	mustVerify(b, dir) // warm the page cache
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkReadFrom measures the shipper's read path: batches of 512 from a cursor.
func BenchmarkReadFrom(b *testing.B) {
	const n = 50_000
	l := openLog(b, b.TempDir(), 0)
	appendEvents(b, l, 0, n, 4096)
	b.ResetTimer()
	next := uint64(1)
	for range (b.N + 511) / 512 {
		es, err := l.ReadFrom(next, 512)
		if err != nil {
			b.Fatal(err)
		}
		next += uint64(len(es))
		if next > n {
			next = 1
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkParseLine(b *testing.B) {
	line := goodLine(`{"seq":123456,"ts":"2025-03-01T12:00:00.000000007Z","kind":"event","event":{"type":"FILE","rule":"aws-credentials-read","severity":"CRITICAL","source":"fanotify","path":"/home/deploy/.aws/credentials","op":"read","pid":4007,"ppid":1234,"uid":1000,"user":"deploy","exe":"/usr/bin/python3.11","cmdline":"python3 /opt/app/sync.py --profile prod --bucket backups-7 --region eu-west-1"}}`)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := parseLine(line); err != nil {
			b.Fatal(err)
		}
	}
}
