package procwatch

import (
	"regexp"
	"testing"
)

// BenchmarkMatch is the per-exec cost of matching a typical rule set against an exec
// that matches nothing, the common case.
func BenchmarkMatch(b *testing.B) {
	m, err := newMatcher([]Rule{
		{Name: "netcat", Names: []string{"nc", "ncat", "netcat", "socat"}},
		{Name: "tools", Paths: []string{"/usr/bin/nmap", "/usr/bin/tcpdump"}},
		{Name: "pipe-to-shell", Cmdline: []string{"curl * | *sh", "wget * | *sh", "*/dev/tcp/*"}},
		{Name: "decode", CmdlineRegex: []*regexp.Regexp{regexp.MustCompile(`base64 (-d|--decode)`)}},
	}, standardPath)
	if err != nil {
		b.Fatal(err)
	}
	x := &execInfo{
		Filename: "/usr/bin/git", FilenameReal: "/usr/bin/git", Exe: "/usr/bin/git", Comm: "git",
		Cmdline: "git -c core.quotepath=false log --format=%H%x00%s -n 100 -- agent/procwatch", HaveCmdline: true,
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(m.match(x)) != 0 {
			b.Fatal("matched")
		}
	}
}
