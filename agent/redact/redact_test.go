package redact

import (
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	r, err := New(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ in, want string }{
		{"mysql --password=hunter2 -h db", "mysql --password=[REDACTED] -h db"},
		{"app --api-key sk_live_abc123 --verbose", "app --api-key [REDACTED] --verbose"},
		{`app --token "two words" next`, "app --token [REDACTED] next"},
		{"env DB_PASSWORD=s3cret ./run", "env DB_PASSWORD=[REDACTED] ./run"},
		{"GITHUB_TOKEN=abc make release", "GITHUB_TOKEN=[REDACTED] make release"},
		{"curl -H 'Authorization: Bearer abc.def.ghi' https://x", "curl -H 'Authorization: Bearer [REDACTED]' https://x"},
		{"git clone https://bob:pa55@git.example.com/r.git", "git clone https://bob:[REDACTED]@git.example.com/r.git"},
		{"psql postgres://app:pw@db:5432/x", "psql postgres://app:[REDACTED]@db:5432/x"},
		{"mysql -uroot -proot123 shop", "mysql -uroot -p[REDACTED] shop"},
		{"sshpass -p secret ssh host", "sshpass -p [REDACTED] ssh host"},
		{"aws --key AKIAIOSFODNN7EXAMPLE", "aws --key [REDACTED]"},
		{"x ghp_" + strings.Repeat("a", 36), "x [REDACTED]"},
		{"x eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2ln", "x [REDACTED]"},
		// Not secrets: left exactly as they are.
		{"nc -z 127.0.0.1 1", "nc -z 127.0.0.1 1"},
		{"ssh -p 2222 host", "ssh -p 2222 host"},
		{"cat /etc/passwd", "cat /etc/passwd"},
		{"passwd alice", "passwd alice"},
		{"ls --sort=time", "ls --sort=time"},
	}
	for _, c := range cases {
		got, changed := r.String(c.in)
		if got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
		if changed != (c.in != c.want) {
			t.Errorf("String(%q) changed = %v", c.in, changed)
		}
		if again, _ := r.String(got); again != got {
			t.Errorf("redacting %q twice changed it to %q", got, again)
		}
	}
}

func TestCustomPatterns(t *testing.T) {
	r, err := New([]string{`(?i)pin=(?P<secret>\d+)`, `internal-[0-9]+`}, true)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.String("unlock pin=1234 host internal-42 --password=kept")
	if want := "unlock pin=[REDACTED] host [REDACTED] --password=kept"; got != want {
		t.Errorf("got %q, want %q (defaults off, custom on)", got, want)
	}
	if _, err := New([]string{"(unclosed"}, false); err == nil || !strings.Contains(err.Error(), "(unclosed") {
		t.Errorf("New(bad) = %v, want an error naming the pattern", err)
	}
	var zero *Redactor
	if got, changed := zero.String("--password=x"); changed || got != "--password=x" {
		t.Errorf("nil redactor changed %q", got)
	}
}

func BenchmarkCmdline(b *testing.B) {
	r, _ := New(nil, false)
	s := "/usr/bin/python3 /opt/app/worker.py --queue default --concurrency 4 --log-level info"
	for b.Loop() {
		r.String(s)
	}
}
