package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestFormatDocExample checks that the example in docs/formats/audit-chain.md is a valid
// chain, so that the document and the code cannot drift apart.
func TestFormatDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "formats", "audit-chain.md"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var seg *os.File
	for line := range bytes.Lines(doc) {
		if name, ok := bytes.CutPrefix(line, []byte("`seg-")); ok {
			if seg != nil {
				seg.Close()
			}
			name = name[:bytes.IndexByte(name, '`')]
			if seg, err = os.Create(filepath.Join(dir, "seg-"+string(name))); err != nil {
				t.Fatal(err)
			}
		}
		if bytes.HasPrefix(line, []byte(`{"hash":"`)) && seg != nil {
			if _, err := seg.Write(line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if seg == nil {
		t.Fatal("no example segments found in the document")
	}
	seg.Close()
	rep := mustVerify(t, dir)
	if rep.Entries != 3 || rep.Segments != 2 {
		t.Fatalf("example verified as %+v", rep)
	}
}
