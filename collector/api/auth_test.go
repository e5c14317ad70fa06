package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tripwire-project/tripwire/collector/api"
	"github.com/tripwire-project/tripwire/collector/config"
)

const (
	issuer   = "https://idp.test/realms/security"
	audience = "tripwire"
)

// idp is an identity provider: RSA keys and a JWKS served over HTTP.
type idp struct {
	mu    sync.Mutex
	keys  map[string]*rsa.PrivateKey // published, by kid
	hits  atomic.Int32
	jwks  *httptest.Server
	other *rsa.PrivateKey // never published
}

func newIDP(t *testing.T, kids ...string) *idp {
	t.Helper()
	p := &idp{keys: map[string]*rsa.PrivateKey{}, other: rsaKey(t)}
	for _, kid := range kids {
		p.keys[kid] = rsaKey(t)
	}
	p.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		var set jose.JSONWebKeySet
		for kid, k := range p.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(p.jwks.Close)
	return p
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rotate publishes a new key kid and withdraws the others.
func (p *idp) rotate(t *testing.T, kid string) {
	k := rsaKey(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = map[string]*rsa.PrivateKey{kid: k}
}

func (p *idp) key(kid string) *rsa.PrivateKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[kid]
}

func claims(sub string) jwt.Claims {
	now := time.Now()
	return jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Subject: sub,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute))}
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, c any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// jwtServer serves the API over a DuckDB store with a static token and p's JWTs.
func jwtServer(t *testing.T, p *idp, refetch time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(api.New(api.Options{Store: newStore(t), Tokens: []string{token}, JWT: &api.JWTOptions{
		JWT:             config.JWT{Issuer: issuer, Audience: audience, JWKSURL: p.jwks.URL},
		RefetchInterval: refetch,
	}}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func status(t *testing.T, base, tok string) int {
	t.Helper()
	resp, _ := get(t, base+"/api/v1/rules", tok)
	return resp.StatusCode
}

func TestJWT(t *testing.T) {
	p := newIDP(t, "k1")
	base := jwtServer(t, p, time.Hour)
	k1 := p.key("k1")
	valid := sign(t, jose.RS256, k1, "k1", claims("alice"))
	if got := status(t, base, valid); got != http.StatusOK {
		t.Fatalf("a valid token: %d, want 200", got)
	}
	if got := status(t, base, token); got != http.StatusOK {
		t.Errorf("the static token next to JWTs: %d, want 200", got)
	}

	expired := claims("alice")
	expired.Expiry = jwt.NewNumericDate(time.Now().Add(-10 * time.Minute))
	notYet := claims("alice")
	notYet.NotBefore = jwt.NewNumericDate(time.Now().Add(10 * time.Minute))
	wrongAud := claims("alice")
	wrongAud.Audience = jwt.Audience{"grafana"}
	wrongIss := claims("alice")
	wrongIss.Issuer = "https://evil.test"
	noExp := claims("alice")
	noExp.Expiry = nil
	noSub := claims("")
	parts := strings.Split(valid, ".")
	forged, _ := json.Marshal(claims("admin"))
	b64 := base64.RawURLEncoding.EncodeToString
	refused := map[string]string{
		"expired":             sign(t, jose.RS256, k1, "k1", expired),
		"not yet valid":       sign(t, jose.RS256, k1, "k1", notYet),
		"wrong audience":      sign(t, jose.RS256, k1, "k1", wrongAud),
		"wrong issuer":        sign(t, jose.RS256, k1, "k1", wrongIss),
		"no exp":              sign(t, jose.RS256, k1, "k1", noExp),
		"no sub":              sign(t, jose.RS256, k1, "k1", noSub),
		"HS256 with the n":    sign(t, jose.HS256, k1.PublicKey.N.Bytes(), "k1", claims("alice")),
		"HS256":               sign(t, jose.HS256, []byte("a-shared-secret-of-32-bytes-long"), "k1", claims("alice")),
		"alg none":            b64([]byte(`{"alg":"none","kid":"k1","typ":"JWT"}`)) + "." + parts[1] + ".",
		"unknown key":         sign(t, jose.RS256, p.other, "k9", claims("alice")),
		"unpublished key, k1": sign(t, jose.RS256, p.other, "k1", claims("alice")),
		"tampered payload":    parts[0] + "." + b64(forged) + "." + parts[2],
		"tampered signature":  parts[0] + "." + parts[1] + "." + b64([]byte("not the signature")),
		"RS512":               sign(t, jose.RS512, k1, "k1", claims("alice")),
		"garbage":             "not.a.jwt",
	}
	for name, tok := range refused {
		if got := status(t, base, tok); got != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, got)
		}
	}
	// Unknown kids refetch the set at most once per RefetchInterval (an hour here):
	// the first fetch, and no other.
	if n := p.hits.Load(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want once", n)
	}
}

func TestJWTSubjectTriages(t *testing.T) {
	p := newIDP(t, "k1")
	base := jwtServer(t, p, time.Hour)
	tok := sign(t, jose.RS256, p.key("k1"), "k1", claims("alice@example.com"))
	_, body := get(t, base+"/api/v1/alerts", tok)
	id := body["alerts"].([]any)[0].(map[string]any)["alert_id"].(string)
	req, _ := http.NewRequest(http.MethodPatch, base+"/api/v1/alerts/"+id, strings.NewReader(`{"status":"resolved"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK || a["triage_by"] != "alice@example.com" {
		t.Errorf("PATCH with a JWT: %d %v (%v), want triage_by the token's sub", resp.StatusCode, a, err)
	}
}

func TestJWTKeyRotation(t *testing.T) {
	p := newIDP(t, "k1")
	// Any refetch is allowed: the rotation below takes far longer than a nanosecond.
	base := jwtServer(t, p, time.Nanosecond)
	if got := status(t, base, sign(t, jose.RS256, p.key("k1"), "k1", claims("alice"))); got != http.StatusOK {
		t.Fatalf("before rotation: %d", got)
	}
	p.rotate(t, "k2")
	if got := status(t, base, sign(t, jose.RS256, p.key("k2"), "k2", claims("alice"))); got != http.StatusOK {
		t.Errorf("a token of the new key: %d, want 200", got)
	}
	if n := p.hits.Load(); n != 2 {
		t.Errorf("the JWKS was fetched %d times, want twice (first use, then the new kid)", n)
	}
}
