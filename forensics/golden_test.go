package forensics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// TestExportGolden pins the SQL and NDJSON formats (docs/formats/forensics-export.md)
// on a small chain with a rotation, a filtered-out entry and a hostile command line.
// Rewrite with: go test ./forensics -run Golden -update
func TestExportGolden(t *testing.T) {
	dir := t.TempDir()
	ps := []chain.Payload{fileEvent(0), fileEvent(1), fileEvent(2)}
	ps[1].Event.Cmdline = "sh -c 'echo \"hi\"; cat /etc/shadow' \\ \x1b[0m\n"
	ps[2].Event.Rule = "other-rule"
	writeChain(t, dir, 1024, ps...)
	for _, c := range []struct {
		file string
		opts Options
	}{
		{"export.golden.sql", Options{Filter: Filter{Rule: "aws-credentials-read"}}},
		{"export.golden.ndjson", Options{Format: FormatNDJSON, Filter: Filter{Rule: "aws-credentials-read"}}},
	} {
		got := strings.ReplaceAll(exportString(t, dirSource(t, dir, "web-01"), c.opts), dir, "DIR")
		path := filepath.Join("testdata", c.file)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs from the export (run with -update after an intended change):\n%s", c.file, got)
		}
		if c.opts.Format == "" {
			db := loadScript(t, got)
			if b := rows(t, db, "SELECT * FROM chain_breaks"); len(b) != 0 {
				t.Fatalf("chain_breaks: %q", b)
			}
		}
	}
}
