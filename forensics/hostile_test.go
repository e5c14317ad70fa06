package forensics

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// hostileStrings are command lines and paths an intruder controls.
func hostileStrings() []string {
	junk := make([]byte, 0, 255)
	for c := 1; c < 256; c++ { // NUL-free binary junk; encoding/json makes it \ufffd
		junk = append(junk, byte(c))
	}
	return []string{
		`it's`, `''`, `'); DROP TABLE entries; --`, "a;\nb;\n", "line1\nline2\r\nline3", `back\slash\\ \'`,
		`"double" "quotes"`, "tab\there", "esc\x1b[31mred", "del\x7f", "/* not a comment */ -- nor this",
		"semicolon at end;", "unicode: żółć 漢字 🔥 \u2028\u2029", string(junk), "\xff\xfe invalid utf-8 \xc3\x28",
		"x" + strings.Repeat("A'B\\C;\n", 8) + "end",
	}
}

// writeRawChain writes payloads, verbatim, as a valid one-segment chain, hashing them
// with the chain's definition: what a directory holding content the agent's writer
// would never produce (invalid UTF-8, raw control characters, NUL) looks like.
func writeRawChain(t *testing.T, dir string, payloads [][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	prev := chain.GenesisPrev
	for _, p := range payloads {
		h := chain.Hash(prev, p)
		fmt.Fprintf(&b, `{"hash":"%s","prev":"%s","payload":%s}`+"\n", h, prev, p)
		prev = h
	}
	writeFile(t, filepath.Join(dir, "seg-00000000000000000001.log"), b.String())
}

// chainPayloads reads the payloads of a chain directory as stored.
func chainPayloads(t *testing.T, dir string) map[uint64][]byte {
	t.Helper()
	m := map[uint64][]byte{}
	err := dirSource(t, dir, "h").Entries(context.Background(), "h", func(e *Entry) error {
		m[e.Seq] = bytes.Clone(e.Payload)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// loadedPayloads reads the payloads of a loaded export back as bytes.
func loadedPayloads(t *testing.T, db *sql.DB) map[uint64][]byte {
	t.Helper()
	rs, err := db.Query("SELECT seq, coalesce(encode(payload), payload_bytes) FROM entries")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	m := map[uint64][]byte{}
	for rs.Next() {
		var seq uint64
		var p []byte
		if err := rs.Scan(&seq, &p); err != nil {
			t.Fatal(err)
		}
		m[seq] = p
	}
	return m
}

// roundTrip exports dir in every format, loads each export and checks that every
// payload comes back byte for byte and every hash recomputes in SQL.
func roundTrip(t *testing.T, dir string, want map[uint64][]byte) {
	t.Helper()
	for _, f := range []Format{FormatSQL, FormatNDJSON, FormatParquet} {
		t.Run(string(f), func(t *testing.T) {
			out := exportFile(t, dirSource(t, dir, "h"), Options{Format: f})
			if f == FormatSQL {
				checkScriptClean(t, out)
			}
			db, err := OpenDuckDB("")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := LoadExport(context.Background(), db, out); err != nil {
				t.Fatalf("load: %v", err)
			}
			got := loadedPayloads(t, db)
			if len(got) != len(want) {
				t.Fatalf("%d payloads loaded, want %d", len(got), len(want))
			}
			for seq, w := range want {
				if !bytes.Equal(got[seq], w) {
					t.Errorf("seq %d: payload differs after the round trip:\n got %q\nwant %q", seq, trunc(got[seq]), trunc(w))
				}
			}
			if b := rows(t, db, "SELECT * FROM chain_breaks"); len(b) != 0 {
				t.Fatalf("chain_breaks: %q", b)
			}
			if n := rows(t, db, "SELECT count(*) FROM chain_checks WHERE recomputed_hash = hash"); n[0] != fmt.Sprint(len(want)) {
				t.Fatalf("%s hashes recompute, want %d", n[0], len(want))
			}
		})
	}
}

// checkScriptClean: the script is valid UTF-8 with no control character but '\n'.
func checkScriptClean(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.ToValidUTF8(b, nil), b) {
		t.Fatal("the SQL script is not valid UTF-8")
	}
	for i, c := range b {
		if (c < 0x20 && c != '\n') || c == 0x7f {
			t.Fatalf("the SQL script holds control byte %#x at offset %d", c, i)
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// TestHostileContentRoundTrips: hostile command lines and paths, written by the agent's
// writer, and a 1 MiB command line, come back byte for byte from every format.
func TestHostileContentRoundTrips(t *testing.T) {
	dir := t.TempDir()
	var ps []chain.Payload
	for i, s := range hostileStrings() {
		p := fileEvent(i)
		p.Event.Cmdline, p.Event.Path, p.Event.User = s, "/tmp/"+s, s
		ps = append(ps, p)
	}
	big := fileEvent(99)
	// 5 characters, 7 bytes of JSON each: the payload comes out just under the 1 MiB bound.
	big.Event.Cmdline = strings.Repeat("x'\\;\n", (audit.MaxPayloadBytes-4096)/7)
	ps = append(ps, big)
	writeChain(t, dir, 0, ps...)
	want := chainPayloads(t, dir)
	if n := len(want[uint64(len(ps))]); n < 1<<20-8192 {
		t.Fatalf("the long payload has %d bytes", n)
	}
	roundTrip(t, dir, want)
}

// TestRawHostileChainRoundTrips: payloads the agent would never write (invalid UTF-8,
// raw control characters, a NUL, quotes and semicolons at line ends) in a chain that
// still verifies, as a tampered or foreign directory may hold, come back byte for byte.
func TestRawHostileChainRoundTrips(t *testing.T) {
	dir := t.TempDir()
	var payloads [][]byte
	for i, s := range append(hostileStrings(), "nul\x00byte", "cr\ronly") {
		s = strings.ReplaceAll(s, "\n", " ") // one line per entry
		payloads = append(payloads, []byte(fmt.Sprintf(`{"seq":%d,"ts":"2026-11-25T06:00:00Z","kind":"event","event":{"type":"FILE","rule":"r","cmdline":"%s"}}`, i+1, s)))
	}
	writeRawChain(t, dir, payloads)
	if _, err := audit.Verify(dir); err != nil {
		t.Fatalf("the raw chain should verify: %v", err)
	}
	want := chainPayloads(t, dir)
	encs := map[PayloadEncoding]int{}
	for _, p := range want {
		encs[ClassifyPayload(p)]++
	}
	if encs[EncText] == 0 || encs[EncTextBase64] == 0 || encs[EncBytes] == 0 {
		t.Fatalf("the raw chain should exercise every encoding: %v", encs)
	}
	roundTrip(t, dir, want)
}
