//go:build linux

package procwatch

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkEnrichFromKernel is the reader's per-exec /proc work in ebpf mode (exe,
// cwd, cgroup, parent exe and, with a content rule, the hash-cache lookup) for a live
// process whose image the kernel named.
func BenchmarkEnrichFromKernel(b *testing.B) {
	for _, hashing := range []bool{false, true} {
		name := map[bool]string{false: "no-hash", true: "hash-cached"}[hashing]
		b.Run(name, func(b *testing.B) {
			en := &enricher{hashing: hashing, hashes: newHashCache()}
			var st unix.Stat_t
			if err := unix.Stat("/proc/self/exe", &st); err != nil {
				b.Fatal(err)
			}
			want := image{dev: st.Dev, ino: st.Ino}
			pid := int32(os.Getpid())
			warm := &execRecord{pid: pid, ppid: int32(os.Getppid())}
			en.fromKernel(warm, want)
			if warm.exeFile != nil {
				sum, err := en.hashes.hash(warm.exeFile, warm.exeKey)
				warm.release()
				if err != nil || sum == "" {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				r := &execRecord{pid: pid, ppid: int32(os.Getppid()), filename: "/proc/self/exe"}
				en.fromKernel(r, want)
				if r.exe == "" || r.exeFile != nil {
					b.Fatalf("record %+v", r)
				}
			}
		})
	}
}

// BenchmarkListProcs is one proc-mode poll of this machine's processes.
func BenchmarkListProcs(b *testing.B) {
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		procs, err := listProcs()
		if err != nil {
			b.Fatal(err)
		}
		n = len(procs)
	}
	b.ReportMetric(float64(n), "procs")
}
