package watcher

import (
	"strings"
	"testing"
)

func TestNewFileWatcherRejects(t *testing.T) {
	tests := []struct {
		name  string
		rules []FileRule
		opts  Options
		want  []string
	}{
		{name: "no rules", want: []string{"no file rules"}},
		{
			name:  "every problem at once",
			rules: []FileRule{{Severity: "WARN", Paths: []string{"/tmp"}}, {Name: "r", Paths: []string{"relative/x"}}, {Name: "empty"}},
			want:  []string{"file rule 0: name is required", `path "relative/x" is not absolute`, `file rule "empty": at least one path`},
		},
		{
			name:  "unknown mode",
			rules: []FileRule{{Name: "r", Paths: []string{"/tmp"}}},
			opts:  Options{ForceMode: "inotify"},
			want:  []string{`"inotify" is not one of`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewFileWatcher(tt.rules, tt.opts)
			if err == nil {
				w.Close()
				t.Fatal("NewFileWatcher succeeded")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestMatcher(t *testing.T) {
	m := newMatcher()
	m.add("/etc/passwd", false, []ruleRef{{"passwd", "WARN"}})
	m.add("/srv/decoy", true, []ruleRef{{"decoy", "CRITICAL"}, {"passwd", "WARN"}})
	m.add("/srv/decoy/creds", false, []ruleRef{{"decoy", "CRITICAL"}})
	tests := []struct {
		path string
		want string
	}{
		{"/etc/passwd", "passwd"},
		{"/etc/passwd-", ""},
		{"/etc/shadow", ""},
		{"/srv/decoy", "decoy,passwd"},
		{"/srv/decoy/a", "decoy,passwd"},
		{"/srv/decoy/creds", "decoy,passwd"},
		{"/srv/decoy/sub/a", "decoy,passwd"},
		{"/srv/decoy-other/a", ""},
		{"/", ""},
	}
	for _, tt := range tests {
		var names []string
		for _, r := range m.match(tt.path) {
			names = append(names, r.Name)
		}
		if got := strings.Join(names, ","); got != tt.want {
			t.Errorf("match(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}
