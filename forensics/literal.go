package forensics

import (
	"encoding/base64"
	"unicode/utf8"
)

// PayloadEncoding says how a payload is written into an export.
type PayloadEncoding int

// Payload encodings, from the most readable to the most general. Every one is
// reversible: the bytes loaded are the bytes chained.
const (
	// EncText: valid UTF-8 with no control character (bytes 0x00-0x1f, 0x7f). Written
	// as a plain SQL literal '...' with single quotes doubled, loaded into the payload
	// column. Every payload the agent writes is of this kind (encoding/json escapes
	// control characters).
	EncText PayloadEncoding = iota
	// EncTextBase64: valid UTF-8 without NUL but with control characters. Written as
	// decode(from_base64('...')), so that the script never holds a raw control
	// character, and loaded into the payload column as text.
	EncTextBase64
	// EncBytes: not valid UTF-8, or holding a NUL, which a DuckDB VARCHAR cannot hold
	// faithfully. Written as from_base64('...') and loaded into the payload_bytes BLOB
	// column; payload is then NULL. sha256() hashes a BLOB's bytes, so the hash still
	// recomputes in SQL.
	EncBytes
)

// ClassifyPayload returns the encoding a payload is exported with.
func ClassifyPayload(p []byte) PayloadEncoding {
	ctl := false
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return EncBytes
			}
			if c < 0x20 || c == 0x7f {
				ctl = true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			return EncBytes
		}
		i += n
	}
	if ctl {
		return EncTextBase64
	}
	return EncText
}

// AppendSQLString appends s as a DuckDB string literal: between single quotes, each
// single quote doubled. DuckDB literals have no backslash escapes, so backslashes pass
// as they are. s must be of encoding EncText (AppendSQLText handles any text); a
// literal holding raw control characters would survive DuckDB's parser but not every
// tool that handles the script line by line.
func AppendSQLString(dst []byte, s []byte) []byte {
	dst = append(dst, '\'')
	for _, c := range s {
		if c == '\'' {
			dst = append(dst, '\'', '\'')
			continue
		}
		dst = append(dst, c)
	}
	return append(dst, '\'')
}

// AppendSQLText appends a SQL expression of type VARCHAR or BLOB whose value is exactly
// b, and the encoding used: a plain literal for EncText, decode(from_base64('…')) for
// EncTextBase64, from_base64('…') (a BLOB) for EncBytes. The output never holds a byte
// below 0x20 or 0x7f, nor invalid UTF-8.
func AppendSQLText(dst []byte, b []byte) ([]byte, PayloadEncoding) {
	enc := ClassifyPayload(b)
	switch enc {
	case EncText:
		return AppendSQLString(dst, b), enc
	case EncTextBase64:
		dst = append(dst, "decode(from_base64('"...)
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, "'))"...), enc
	default:
		dst = append(dst, "from_base64('"...)
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, "')"...), enc
	}
}

// appendSQLOptText appends a VARCHAR expression for a short text field (host id, kind,
// rule…): NULL when empty, a literal when clean, decode(from_base64(…)) otherwise. Text
// that is not valid UTF-8 is loaded with decode(…, 'replace'), which is lossy; these
// fields are not covered by the hash (the payload is) and are for convenience only.
func appendSQLOptText(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "NULL"...)
	}
	b := []byte(s)
	switch ClassifyPayload(b) {
	case EncText:
		return AppendSQLString(dst, b)
	case EncTextBase64:
		dst = append(dst, "decode(from_base64('"...)
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, "'))"...)
	default:
		dst = append(dst, "decode(from_base64('"...)
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, "'), 'replace')"...)
	}
}
