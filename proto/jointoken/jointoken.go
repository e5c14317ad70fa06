// Package jointoken is the one-time join token of enrolment, shared by the collector
// (which makes and redeems it) and the agent (which reads it and sends its secret). One
// string carries everything a host needs to enrol, so `tripwire enroll --collector ADDR
// --token T` needs no file copied to it first:
//
//	tw1.<id>.<secret>.<ca-sha256>
//
//	tw1        the format, version 1; a later format gets another prefix
//	id         16 lowercase hex characters: names the token in the collector's store and
//	           logs; it is not secret
//	secret     43 base64url characters (32 random bytes, unpadded): the proof; the
//	           collector keeps only its SHA-256
//	ca-sha256  64 lowercase hex characters: the SHA-256 of the DER of the collector's CA
//	           certificate, the pin the host checks the collector against before it sends
//	           the secret (openssl x509 -in ca.crt -noout -fingerprint -sha256 prints it,
//	           in upper case with colons)
//
// The parts contain no '.', so the string splits unambiguously, and no character a shell
// or a YAML file would mangle. See docs/adr/0013-enrolment-and-short-lived-certificates.md.
package jointoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Version is the prefix naming this format.
const Version = "tw1"

// Lengths of the parts, in characters.
const (
	IDLen     = 16
	SecretLen = 43
	PinLen    = 2 * sha256.Size
)

// secretBytes is the secret's entropy.
const secretBytes = 32

// Format is the token's shape, for messages.
const Format = Version + ".<id>.<secret>.<ca-sha256>"

// Token is a parsed join token.
type Token struct {
	// ID names the token (16 lowercase hex characters).
	ID string
	// Secret is the proof, in its text form (43 base64url characters).
	Secret string
	// CAPin is the SHA-256 of the collector's CA certificate (DER).
	CAPin [sha256.Size]byte
}

// New makes a token with a random id and secret, pinning the CA certificate caDER.
func New(caDER []byte) (Token, error) {
	var id [IDLen / 2]byte
	var secret [secretBytes]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("making join token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return Token{}, fmt.Errorf("making join token: %w", err)
	}
	return Token{
		ID:     hex.EncodeToString(id[:]),
		Secret: base64.RawURLEncoding.EncodeToString(secret[:]),
		CAPin:  Pin(caDER),
	}, nil
}

// Pin returns the pin of a CA certificate: the SHA-256 of its DER.
func Pin(caDER []byte) [sha256.Size]byte { return sha256.Sum256(caDER) }

// String returns the token in its printed form, tw1.<id>.<secret>.<ca-sha256>.
func (t Token) String() string {
	return Version + "." + t.ID + "." + t.Secret + "." + hex.EncodeToString(t.CAPin[:])
}

// PinHex returns the CA pin as 64 lowercase hex characters.
func (t Token) PinHex() string { return hex.EncodeToString(t.CAPin[:]) }

// SecretSHA256 returns the SHA-256 of the secret's text as lowercase hex: what the
// collector stores and compares, so that its store never holds a usable secret.
func (t Token) SecretSHA256() string { return SecretSHA256(t.Secret) }

// SecretSHA256 returns the SHA-256 of a secret's text as lowercase hex.
func SecretSHA256(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseError says what is wrong with a string that is not a join token. It never
// repeats the secret.
type ParseError struct {
	// Part names what is wrong: "format", "version", "id", "secret" or "ca-sha256".
	Part string
	// Reason says how, for an operator.
	Reason string
}

// Error implements error.
func (e *ParseError) Error() string { return "token: " + e.Reason }

// Parse reads a token in its printed form. Surrounding white space (a copied line end)
// is ignored; anything else that does not fit the format is a *ParseError naming the
// part that is wrong.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if v := parts[0]; v != Version {
		if isVersionLike(v) && len(parts) > 1 {
			return Token{}, &ParseError{Part: "version", Reason: fmt.Sprintf(
				"format %s is not supported by this build (want %s): use a tripwire as new as the collector that made the token", v, Version)}
		}
		return Token{}, &ParseError{Part: "format", Reason: fmt.Sprintf(
			"not a tripwire join token (want %s, as `tripwire-collector pki token` prints it)", Format)}
	}
	if len(parts) != 4 {
		return Token{}, &ParseError{Part: "format", Reason: fmt.Sprintf(
			"has %d parts separated by '.', want 4 (%s): was it cut short or joined with something when copied?", len(parts), Format)}
	}
	id, secret, pin := parts[1], parts[2], parts[3]
	if len(id) != IDLen || !lowerHex(id) {
		return Token{}, &ParseError{Part: "id", Reason: fmt.Sprintf("the id (second part) must be %d lowercase hex characters, got %d characters", IDLen, len(id))}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(secret)
	if len(secret) != SecretLen || err != nil || len(raw) != secretBytes {
		return Token{}, &ParseError{Part: "secret", Reason: fmt.Sprintf("the secret (third part) must be %d base64url characters (A-Z, a-z, 0-9, '-', '_'), got %d characters", SecretLen, len(secret))}
	}
	var t Token
	if len(pin) != PinLen || !lowerHex(pin) {
		return Token{}, &ParseError{Part: "ca-sha256", Reason: fmt.Sprintf("the CA fingerprint (fourth part) must be %d lowercase hex characters (the SHA-256 of the collector's CA certificate), got %d characters", PinLen, len(pin))}
	}
	if _, err := hex.Decode(t.CAPin[:], []byte(pin)); err != nil {
		return Token{}, &ParseError{Part: "ca-sha256", Reason: "the CA fingerprint (fourth part) is not hex"}
	}
	t.ID, t.Secret = id, secret
	return t, nil
}

// isVersionLike reports whether v looks like a format prefix of this family ("tw" and
// digits), so that a token of a later format gets a message about versions rather than
// "not a token".
func isVersionLike(v string) bool {
	if len(v) < 3 || !strings.HasPrefix(v, "tw") {
		return false
	}
	for _, r := range v[2:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
