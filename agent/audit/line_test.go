package audit

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// goodLine returns a well-formed line for payload, chained from genesis.
func goodLine(payload string) []byte {
	prev := []byte(chain.GenesisPrev)
	hash := []byte(chain.Hash(chain.GenesisPrev, []byte(payload)))
	return appendLine(nil, hash, prev, []byte(payload))
}

func TestParseLine(t *testing.T) {
	const payload = `{"seq":42,"ts":"2025-03-01T12:00:00Z","kind":"agent","notice":{"what":"agent_started"}}`
	good := goodLine(payload)
	tests := []struct {
		name    string
		line    []byte
		wantErr error
		wantSeq uint64
	}{
		{"well formed", good, nil, 42},
		{"smallest payload", goodLine(`{"seq":0}`), nil, 0},
		{"max seq", goodLine(`{"seq":18446744073709551615}`), nil, 1<<64 - 1},
		{"empty", nil, errNoNewline, 0},
		{"no newline", good[:len(good)-1], errNoNewline, 0},
		{"cut short", append(good[:100:100], '\n'), errShort, 0},
		{"spaces between keys", bytes.Replace(good, []byte(`","prev"`), []byte(`", "prev"`), 1), errFraming, 0},
		{"keys reordered", bytes.Replace(good, []byte(`{"hash"`), []byte(`{"prev"`), 1), errFraming, 0},
		{"no closing brace", bytes.Replace(good, []byte("}}\n"), []byte("} \n"), 1), errFraming, 0},
		{"uppercase hash", append([]byte(keyHash+strings.ToUpper(string(good[hashOff:hashOff+64]))), good[hashOff+64:]...), errHashHex, 0},
		{"non-hex prev", bytes.Replace(good, []byte(chain.GenesisPrev), []byte(strings.Repeat("g", 64)), 1), errPrevHex, 0},
		{"payload not an object", goodLine(`["seq",1]`), errPayloadStart, 0},
		{"payload does not start with seq", goodLine(`{"ts":"x","seq":1}`), errPayloadStart, 0},
		{"payload not closed", bytes.Replace(goodLine(`{"seq":1,"a":[1]}`), []byte("]}}\n"), []byte("]]}\n"), 1), errPayloadEnd, 0},
		{"negative seq", goodLine(`{"seq":-1}`), errSeqDigits, 0},
		{"leading zero", goodLine(`{"seq":01}`), errSeqDigits, 0},
		{"seq overflows", goodLine(`{"seq":18446744073709551616}`), errSeqDigits, 0},
		{"seq as a string", goodLine(`{"seq":"1"}`), errSeqDigits, 0},
		{"seq followed by junk", goodLine(`{"seq":1x}`), errSeqDigits, 0},
		{"fractional seq", goodLine(`{"seq":1.5}`), errSeqDigits, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseLine(tt.line)
			if err != tt.wantErr {
				t.Fatalf("parseLine error %v, want %v", err, tt.wantErr)
			}
			if err == nil && e.Seq != tt.wantSeq {
				t.Fatalf("seq %d, want %d", e.Seq, tt.wantSeq)
			}
		})
	}
	if e, _ := parseLine(good); string(e.Payload) != payload || !selfConsistent(e) {
		t.Fatalf("payload %q, consistent %v", e.Payload, selfConsistent(e))
	}
}

// FuzzParseLine checks that the line parser never panics, that whatever it accepts
// re-encodes to the very same bytes, and that the parts sit where the format says.
func FuzzParseLine(f *testing.F) {
	f.Add(goodLine(`{"seq":42,"ts":"2025-03-01T12:00:00Z","kind":"agent","notice":{"what":"agent_started"}}`))
	f.Add(goodLine(`{"seq":0}`))
	f.Add([]byte("{\"hash\":\"\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := parseLine(line)
		if err != nil {
			return
		}
		if got := appendLine(nil, e.Hash, e.Prev, e.Payload); !bytes.Equal(got, line) {
			t.Fatalf("re-encoded line differs:\n%q\n%q", got, line)
		}
		if len(e.Hash) != chain.HashLen || len(e.Prev) != chain.HashLen || !isHex(e.Hash) || !isHex(e.Prev) {
			t.Fatalf("bad hash fields %q %q", e.Hash, e.Prev)
		}
		if !bytes.HasPrefix(e.Payload, []byte(seqPrefix)) || e.Payload[len(e.Payload)-1] != '}' {
			t.Fatalf("bad payload %q", e.Payload)
		}
		_ = selfConsistent(e)
	})
}

func TestIsHex(t *testing.T) {
	naive := func(b []byte) bool {
		for _, c := range b {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
		return true
	}
	base := []byte("0123456789abcdef0123456789abcdef")
	for pos := range base {
		for c := 0; c < 256; c++ {
			b := append([]byte(nil), base...)
			b[pos] = byte(c)
			if got, want := isHex(b), naive(b); got != want {
				t.Fatalf("isHex with byte %#x at %d = %v, want %v", c, pos, got, want)
			}
		}
	}
}
