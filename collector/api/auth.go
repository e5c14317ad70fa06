package api

import (
	"context"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tripwire-project/tripwire/collector/config"
)

// StaticSubject is who a request authenticated with a static token (api.tokens) is, in
// triage records.
const StaticSubject = "token"

// JWT verification defaults.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = time.Minute
	// DefaultRefetchInterval is the least time between two JWKS fetches caused by
	// tokens naming a key the cached set does not hold.
	DefaultRefetchInterval = 30 * time.Second
	// DefaultKeysMaxAge is how long a fetched JWKS is used before it is fetched again
	// (so that keys the provider withdrew stop being accepted).
	DefaultKeysMaxAge = time.Hour
	// maxJWKSBytes bounds a JWKS response.
	maxJWKSBytes = 1 << 20
)

// JWTOptions configure a JWTVerifier. Zero durations take the defaults above.
type JWTOptions struct {
	config.JWT
	Leeway          time.Duration
	RefetchInterval time.Duration
	KeysMaxAge      time.Duration
	// Client fetches the JWKS (default: one with a 10 s timeout).
	Client *http.Client
}

// JWTVerifier validates RS256 JSON Web Tokens against an identity provider's JWKS:
// signature by a key of the set (named by the token's kid), iss, aud, exp (required),
// nbf and iat with a leeway, and a subject. The set is fetched on first use and cached;
// a token naming a key the cache does not hold causes a refetch, at most once per
// RefetchInterval, so that the provider can rotate its keys. It is safe for concurrent
// use.
type JWTVerifier struct {
	opts JWTOptions

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey // by kid
	fetchedAt time.Time
	// tried is when a fetch was last attempted, successful or not.
	tried time.Time
}

// NewJWTVerifier returns a verifier; it fetches nothing until the first token.
func NewJWTVerifier(o JWTOptions) *JWTVerifier {
	if o.Leeway == 0 {
		o.Leeway = DefaultLeeway
	}
	if o.RefetchInterval == 0 {
		o.RefetchInterval = DefaultRefetchInterval
	}
	if o.KeysMaxAge == 0 {
		o.KeysMaxAge = DefaultKeysMaxAge
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &JWTVerifier{opts: o}
}

// Verify returns the subject (sub) of a valid token, or why it is not valid.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (string, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return "", fmt.Errorf("parsing token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return "", errors.New("token has more than one signature")
	}
	key, err := v.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return "", err
	}
	var claims jwt.Claims
	if err := tok.Claims(key, &claims); err != nil {
		return "", fmt.Errorf("verifying signature: %w", err)
	}
	if claims.Expiry == nil {
		return "", errors.New("token has no exp claim")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer: v.opts.Issuer, AnyAudience: jwt.Audience{v.opts.Audience}, Time: time.Now(),
	}, v.opts.Leeway)
	if err != nil {
		return "", fmt.Errorf("validating claims: %w", err)
	}
	if claims.Subject == "" {
		return "", errors.New("token has no sub claim")
	}
	return claims.Subject, nil
}

// key returns the RSA key named kid ("" when the set holds one key), fetching the set
// when it is not cached, too old, or does not hold kid (rate-limited).
func (v *JWTVerifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now()
	stale := v.keys == nil || now.Sub(v.fetchedAt) > v.opts.KeysMaxAge
	if k := v.lookup(kid); k != nil && !stale {
		return k, nil
	}
	if stale || now.Sub(v.tried) >= v.opts.RefetchInterval {
		v.tried = now
		keys, err := v.fetch(ctx)
		if err != nil {
			return nil, err
		}
		v.keys, v.fetchedAt = keys, now
	}
	if k := v.lookup(kid); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("no RS256 signing key %q in the JWKS", kid)
}

func (v *JWTVerifier) lookup(kid string) *rsa.PublicKey {
	if kid == "" && len(v.keys) == 1 {
		for _, k := range v.keys {
			return k
		}
	}
	return v.keys[kid]
}

// fetch reads the JWKS and keeps its RSA signing keys usable with RS256.
func (v *JWTVerifier) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.opts.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	resp, err := v.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching JWKS %s: HTTP %d", v.opts.JWKSURL, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decoding JWKS %s: %w", v.opts.JWKSURL, err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok || (k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != string(jose.RS256)) {
			continue
		}
		keys[k.KeyID] = pub
	}
	return keys, nil
}

// subjectKey is the context key of the authenticated subject.
type subjectKey struct{}

// Subject returns who made the request: the JWT's sub, or StaticSubject.
func Subject(ctx context.Context) string {
	s, _ := ctx.Value(subjectKey{}).(string)
	return s
}

func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		subject := ""
		switch {
		case !ok || token == "":
		case a.validToken(token):
			subject = StaticSubject
		case a.jwt != nil:
			sub, err := a.jwt.Verify(r.Context(), token)
			if err != nil {
				a.opts.Logger.Info("refused a bearer token", "reason", err.Error(), "remote", r.RemoteAddr)
			}
			subject = sub
		}
		if subject == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tripwire"`)
			writeError(w, http.StatusUnauthorized, "", "a valid bearer token is required (Authorization: Bearer TOKEN)")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), subjectKey{}, subject)))
	})
}

func (a *API) validToken(token string) bool {
	valid := false
	for _, t := range a.opts.Tokens {
		// Compare with every token, in constant time, so timing reveals nothing.
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			valid = true
		}
	}
	return valid
}
