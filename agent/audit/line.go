package audit

import (
	"encoding/binary"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// The stored form of one entry is exactly one line:
//
//	{"hash":"<64 hex>","prev":"<64 hex>","payload":<payload JSON text>}\n
//
// Key order is fixed and there are no spaces, so the hash, the prev hash and the payload
// sit at fixed offsets and a reader never needs a JSON parser to check the chain.
const (
	keyHash    = `{"hash":"`
	keyPrev    = `","prev":"`
	keyPayload = `","payload":`
	lineEnd    = "}\n"
	seqPrefix  = `{"seq":`

	hashOff    = len(keyHash)                              // 9
	prevOff    = hashOff + chain.HashLen + len(keyPrev)    // 83
	payloadOff = prevOff + chain.HashLen + len(keyPayload) // 159
	// lineOverhead is the size of a line minus its payload.
	lineOverhead = payloadOff + len(lineEnd)
	// minLine is the shortest well-formed line: the payload {"seq":0}.
	minLine = lineOverhead + len(seqPrefix) + 2

	// MaxPayloadBytes bounds the stored payload text of one entry. Append refuses larger
	// payloads (the pipeline truncates command lines long before this) so that every
	// reader can bound its line buffer.
	MaxPayloadBytes = 1 << 20
	// maxLineBytes bounds one stored line, newline included.
	maxLineBytes = MaxPayloadBytes + lineOverhead
)

// lineError is a reason a line is malformed. It is a constant string so that the hot
// verify path reports it without allocating.
type lineError string

func (e lineError) Error() string { return string(e) }

// Reasons a line does not parse.
const (
	errNoNewline    lineError = "line is not terminated by a newline (incomplete write)"
	errShort        lineError = "line is too short to hold an entry"
	errLong         lineError = "line is longer than the maximum entry size"
	errFraming      lineError = `line is not {"hash":"…","prev":"…","payload":…} in canonical form`
	errHashHex      lineError = "hash is not 64 lowercase hex characters"
	errPrevHex      lineError = "prev is not 64 lowercase hex characters"
	errPayloadStart lineError = `payload does not start with {"seq":`
	errSeqDigits    lineError = "payload seq is not a canonical decimal uint64"
	errPayloadEnd   lineError = "payload is not a JSON object"
)

// rawEntry is one line sliced at its fixed offsets. The slices alias the line.
type rawEntry struct {
	Hash    []byte // 64 lowercase hex characters
	Prev    []byte // 64 lowercase hex characters
	Payload []byte // the exact stored payload text
	Seq     uint64 // parsed from the payload's leading {"seq":N
}

// parseLine slices one stored line, trailing newline included, into its parts. It checks
// the framing, that hash and prev are lowercase hex and that the payload starts with a
// canonical {"seq":N; it does not parse the rest of the payload, nor recompute the hash.
// It never panics, whatever the input.
func parseLine(line []byte) (rawEntry, error) {
	n := len(line)
	if n == 0 || line[n-1] != '\n' {
		return rawEntry{}, errNoNewline
	}
	if n < minLine {
		return rawEntry{}, errShort
	}
	if n > maxLineBytes {
		return rawEntry{}, errLong
	}
	if string(line[:hashOff]) != keyHash ||
		string(line[hashOff+chain.HashLen:prevOff]) != keyPrev ||
		string(line[prevOff+chain.HashLen:payloadOff]) != keyPayload ||
		line[n-2] != '}' {
		return rawEntry{}, errFraming
	}
	e := rawEntry{
		Hash:    line[hashOff : hashOff+chain.HashLen],
		Prev:    line[prevOff : prevOff+chain.HashLen],
		Payload: line[payloadOff : n-2],
	}
	if !isHex(e.Hash) {
		return rawEntry{}, errHashHex
	}
	if !isHex(e.Prev) {
		return rawEntry{}, errPrevHex
	}
	p := e.Payload
	if len(p) < len(seqPrefix)+2 || string(p[:len(seqPrefix)]) != seqPrefix {
		return rawEntry{}, errPayloadStart
	}
	if p[len(p)-1] != '}' {
		return rawEntry{}, errPayloadEnd
	}
	seq, ok := parseSeq(p[len(seqPrefix):])
	if !ok {
		return rawEntry{}, errSeqDigits
	}
	e.Seq = seq
	return e, nil
}

// parseSeq parses the canonical decimal at the start of b, which must be followed by ','
// or '}': no sign, no leading zero, no overflow.
func parseSeq(b []byte) (uint64, bool) {
	var v uint64
	i := 0
	for ; i < len(b) && i <= 20; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			break
		}
		d := uint64(c - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if i == 0 || i == len(b) || (b[i] != ',' && b[i] != '}') || (b[0] == '0' && i > 1) {
		return 0, false
	}
	return v, true
}

// isHex reports whether b, whose length is a multiple of 8, is lowercase hex. It checks
// eight bytes at a time: it runs on every line Verify reads.
func isHex(b []byte) bool {
	const high = 0x8080808080808080
	for ; len(b) >= 8; b = b[8:] {
		x := binary.LittleEndian.Uint64(b)
		if x&high != 0 {
			return false
		}
		if (inRange(x, '0', '9')|inRange(x, 'a', 'f'))&high != high {
			return false
		}
	}
	return len(b) == 0
}

// inRange sets the high bit of each byte of x that lies in [lo, hi]; every byte of x
// must be below 0x80, so that no addition carries into the next byte.
func inRange(x uint64, lo, hi byte) uint64 {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	atLeastLo := x + ones*uint64(0x80-lo)
	aboveHi := x + ones*uint64(0x7f-hi)
	return atLeastLo &^ aboveHi & high
}

// appendLine appends the stored line for (hash, prev, payload) to dst.
func appendLine(dst, hash, prev, payload []byte) []byte {
	dst = append(dst, keyHash...)
	dst = append(dst, hash...)
	dst = append(dst, keyPrev...)
	dst = append(dst, prev...)
	dst = append(dst, keyPayload...)
	dst = append(dst, payload...)
	return append(dst, lineEnd...)
}
