package jointoken

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

const (
	goodID     = "0123456789abcdef"
	goodSecret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
	goodPin    = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)

var good = Version + "." + goodID + "." + goodSecret + "." + goodPin

func TestNewRoundTrip(t *testing.T) {
	ca := []byte("a CA certificate's DER")
	tok, err := New(ca)
	if err != nil {
		t.Fatal(err)
	}
	if tok.CAPin != sha256.Sum256(ca) {
		t.Error("CAPin is not the SHA-256 of the CA")
	}
	s := tok.String()
	if !strings.HasPrefix(s, "tw1.") || len(s) != len(Version)+3+IDLen+SecretLen+PinLen {
		t.Errorf("String() = %q", s)
	}
	back, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(String()) = %v", err)
	}
	if back != tok {
		t.Errorf("round trip: %+v, want %+v", back, tok)
	}
	if back.SecretSHA256() != SecretSHA256(tok.Secret) || len(back.SecretSHA256()) != 64 || strings.Contains(back.SecretSHA256(), tok.Secret) {
		t.Errorf("SecretSHA256 = %q", back.SecretSHA256())
	}
	other, err := New(ca)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == tok.ID || other.Secret == tok.Secret {
		t.Error("two tokens share an id or a secret")
	}
	// Copied with a line end.
	if again, err := Parse("  " + s + "\n"); err != nil || again != tok {
		t.Errorf("Parse with surrounding space = %+v, %v", again, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, part, msg string
	}{
		{"empty", "", "format", "not a tripwire join token (want tw1.<id>.<secret>.<ca-sha256>"},
		{"kubeadm token", "abcdef.0123456789abcdef", "format", "not a tripwire join token"},
		{"API token", "e2e-token-0123456789", "format", "not a tripwire join token"},
		{"upper case prefix", strings.Replace(good, "tw1", "TW1", 1), "format", "not a tripwire join token"},
		{"later version", strings.Replace(good, "tw1", "tw2", 1), "version", "format tw2 is not supported by this build (want tw1)"},
		{"prefix only", "tw1", "format", "has 1 parts"},
		{"cut short", good[:60], "format", "has 3 parts"},
		{"joined", good + ".extra", "format", "has 5 parts"},
		{"short id", "tw1.0123." + goodSecret + "." + goodPin, "id", "16 lowercase hex characters, got 4"},
		{"upper-case id", "tw1.0123456789ABCDEF." + goodSecret + "." + goodPin, "id", "16 lowercase hex"},
		{"short secret", "tw1." + goodID + ".AAEC." + goodPin, "secret", "43 base64url characters"},
		{"secret not base64url", "tw1." + goodID + "." + strings.Replace(goodSecret, "A", "+", 1) + "." + goodPin, "secret", "base64url"},
		{"secret not canonical", "tw1." + goodID + "." + goodSecret[:42] + "9." + goodPin, "secret", "base64url"},
		{"short pin", "tw1." + goodID + "." + goodSecret + ".9f86", "ca-sha256", "64 lowercase hex characters"},
		{"pin with colons", "tw1." + goodID + "." + goodSecret + "." + strings.Repeat("9F:", 21) + "9F", "ca-sha256", "64 lowercase hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Part != tt.part || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "token: ") {
				t.Fatalf("Parse(%q) = %v, want a ParseError on %s containing %q", tt.in, err, tt.part, tt.msg)
			}
			if strings.Contains(err.Error(), goodSecret[:20]) {
				t.Errorf("error repeats the secret: %v", err)
			}
		})
	}
	if _, err := Parse(good); err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
}

// FuzzParse: Parse never panics, and whatever it accepts prints back as the input
// (without surrounding space) and parses to the same token: one token, one spelling.
func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add(" " + good + "\n")
	f.Add("tw2.x.y.z")
	f.Add("tw1...")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a ParseError", err)
			}
			return
		}
		if got := tok.String(); got != strings.TrimSpace(s) {
			t.Fatalf("Parse(%q).String() = %q", s, got)
		}
		again, err := Parse(tok.String())
		if err != nil || again != tok {
			t.Fatalf("reparse = %+v, %v; want %+v", again, err, tok)
		}
	})
}
