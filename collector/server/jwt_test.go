package server

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tripwire-project/tripwire/collector/config"
	"github.com/tripwire-project/tripwire/collector/pki"
)

// TestServerAcceptsJWTsFromTheConfiguredIssuer: a collector configured with api.jwt and
// no static token serves a request bearing the identity provider's token, and refuses
// one without.
func TestServerAcceptsJWTsFromTheConfiguredIssuer(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	}))
	defer jwks.Close()
	dir := t.TempDir()
	if err := pki.Init(filepath.Join(dir, "pki"), pki.InitOptions{ServerNames: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Listen:  config.Listen{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0"},
		PKI:     config.PKI{Dir: filepath.Join(dir, "pki")},
		Storage: config.Storage{DuckDB: filepath.Join(dir, "t.duckdb")},
		API:     config.API{JWT: &config.JWT{Issuer: "https://idp.example", Audience: "tripwire", JWKSURL: jwks.URL}},
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer run(t, s)()

	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "https://idp.example", Audience: jwt.Audience{"tripwire"}, Subject: "alice",
		NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for bearer, want := range map[string]int{tok: http.StatusOK, "": http.StatusUnauthorized, "not-a-jwt": http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.HTTPAddr()+"/api/v1/hosts", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("bearer %.12q: %s, want %d", bearer, resp.Status, want)
		}
	}
}
