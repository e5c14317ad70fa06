package forensics

import (
	"fmt"

	"github.com/tripwire-project/tripwire/agent/audit"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// TestExportRealChainVerifiesInSQL: a chain written by the agent's writer, rotated so
// that anchors appear, exports and loads, and every hash recomputes in DuckDB.
func TestExportRealChainVerifiesInSQL(t *testing.T) {
	dir := t.TempDir()
	var ps []chain.Payload
	for i := range 2000 {
		ps = append(ps, fileEvent(i))
	}
	writeChain(t, dir, 64<<10, ps...)
	if n := len(segFiles(t, dir)); n < 3 {
		t.Fatalf("want a rotated chain, got %d segments", n)
	}
	start := time.Now()
	script := exportString(t, dirSource(t, dir, "web-01"), Options{})
	t.Logf("export: %d bytes in %v", len(script), time.Since(start))
	start = time.Now()
	db := loadScript(t, script)
	t.Logf("load: %v", time.Since(start))
	if got := rows(t, db, "SELECT * FROM chain_breaks"); len(got) != 0 {
		t.Fatalf("chain_breaks: %q", got)
	}
	got := rows(t, db, "SELECT count(*), count(*) FILTER (WHERE recomputed_hash = hash), count(*) FILTER (WHERE pos = seq) FROM chain_checks")
	anchors := rows(t, db, "SELECT count(*) FROM entries WHERE kind = 'anchor' AND in_filter")
	n := len(ps) + len(segFiles(t, dir)) - 1 // one anchor per segment after the first
	if want := fmt.Sprintf("%d|%d|%d", n, n, n); got[0] != want {
		t.Fatalf("rows|hashes recomputed|in chain order = %s, want %s", got[0], want)
	}
	if anchors[0] != fmt.Sprint(len(segFiles(t, dir))-1) {
		t.Fatalf("%s anchors exported, want %d", anchors[0], len(segFiles(t, dir))-1)
	}
	if _, err := audit.Verify(dir); err != nil {
		t.Fatalf("audit.Verify agrees the chain is intact: %v", err)
	}
}
