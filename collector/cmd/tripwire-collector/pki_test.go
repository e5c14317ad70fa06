package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"testing"
)

// Re-issuing keeps a host's id; --new-host-id gives it a new one (a fresh chain).
func TestPKIIssueHostID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out bytes.Buffer
	if err := run([]string{"pki", "init", "--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	idRE := regexp.MustCompile(`host id ([0-9a-f-]{36})`)
	issue := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(append([]string{"pki", "issue", "--dir", dir, "--host", "web-01"}, args...), &out, &out); err != nil {
			t.Fatal(err)
		}
		m := idRE.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no host id in %q", out.String())
		}
		return m[1]
	}
	first := issue()
	if again := issue(); again != first {
		t.Errorf("re-issuing changed the host id: %s → %s", first, again)
	}
	if fresh := issue("--new-host-id"); fresh == first {
		t.Errorf("--new-host-id kept the host id %s", first)
	}
}
