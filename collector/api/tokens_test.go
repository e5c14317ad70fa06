package api_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tripwire-project/tripwire/collector/api"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/proto/jointoken"
	"github.com/tripwire-project/tripwire/storage"
)

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.Bytes()
}

func TestJoinTokens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cas, err := pemfile.ReadCertificates("CA", filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	srv := httptest.NewServer(api.New(api.Options{Store: store, Tokens: []string{token}, Enrol: &api.EnrolOptions{
		CACertificate: func() *x509.Certificate { return cas[0] }, Address: "0.0.0.0:7444",
	}}))
	defer srv.Close()

	resp, body := post(t, srv.URL+"/api/v1/pki/tokens", `{"host": "web-02", "ttl": "30m"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST tokens: %s %s", resp.Status, body)
	}
	var tr api.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	tok, err := jointoken.Parse(tr.Token)
	if err != nil {
		t.Fatalf("the token does not parse: %v", err)
	}
	if tok.CAPin != jointoken.Pin(cas[0].Raw) || tr.CASHA256 != tok.PinHex() {
		t.Error("the token does not pin the collector's CA")
	}
	if _, err := uuid.Parse(tr.HostID); err != nil || tr.Hostname != "web-02" || tr.ID != tok.ID || tr.CreatedBy != api.StaticSubject || tr.EnrollAddress != "0.0.0.0:7444" {
		t.Errorf("response %+v", tr)
	}
	if d := time.Until(tr.ExpiresAt); d < 29*time.Minute || d > 30*time.Minute {
		t.Errorf("expires in %v, want 30m", d)
	}
	// The store has the secret's hash only, and can redeem with it.
	list, err := store.JoinTokens(t.Context())
	if err != nil || len(list) != 1 || list[0].SecretSHA256 != tok.SecretSHA256() || list[0].HostID != tr.HostID {
		t.Fatalf("stored %+v, %v", list, err)
	}
	if strings.Contains(string(body), list[0].SecretSHA256) {
		t.Error("the response shows the secret's hash")
	}
	// A second token for the same host gets another host id.
	_, body2 := post(t, srv.URL+"/api/v1/pki/tokens", `{"host": "web-02"}`)
	var tr2 api.TokenResponse
	if err := json.Unmarshal(body2, &tr2); err != nil || tr2.HostID == tr.HostID || tr2.Token == tr.Token {
		t.Errorf("second token %+v (%v): want a new host id and token", tr2, err)
	}
	if d := time.Until(tr2.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("default ttl: expires in %v, want 1h", d)
	}

	if _, err := store.RedeemJoinToken(t.Context(), tok.ID, tok.SecretSHA256(), time.Now(), "192.0.2.1:1"); err != nil {
		t.Fatal(err)
	}
	resp, listBody := get(t, srv.URL+"/api/v1/pki/tokens", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET tokens: %s", resp.Status)
	}
	got := listBody["tokens"].([]any)
	if len(got) != 2 || listBody["enrolment_enabled"] != true {
		t.Fatalf("GET tokens = %v", listBody)
	}
	states := map[string]string{}
	for _, x := range got {
		m := x.(map[string]any)
		states[m["id"].(string)] = m["state"].(string)
		if _, ok := m["secret_sha256"]; ok {
			t.Error("the list shows secrets' hashes")
		}
	}
	if states[tr.ID] != storage.TokenUsed || states[tr2.ID] != storage.TokenUnused {
		t.Errorf("states = %v", states)
	}

	for _, tt := range []struct{ body, param string }{
		{`{"host": "../etc"}`, "host"},
		{`{}`, "host"},
		{`{"host": "web-03", "ttl": "forever"}`, "ttl"},
		{`{"host": "web-03", "ttl": "200h"}`, "ttl"},
		{`{"host": "web-03", "ttl": "0s"}`, "ttl"},
		{`{"host": "web-03", "validity": "1h"}`, "validity"},
	} {
		resp, body := post(t, srv.URL+"/api/v1/pki/tokens", tt.body)
		var e struct{ Param string }
		json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Param != tt.param {
			t.Errorf("POST %s: %s %s, want 400 naming %s", tt.body, resp.Status, body, tt.param)
		}
	}
}

// Without listen.enroll the token routes refuse, saying how to turn enrolment on.
func TestJoinTokensDisabled(t *testing.T) {
	srv, _ := newServer(t)
	resp, body := post(t, srv.URL+"/api/v1/pki/tokens", `{"host": "web-02"}`)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "set listen.enroll") {
		t.Fatalf("POST tokens without enrolment: %s %s, want 409 naming listen.enroll", resp.Status, body)
	}
	if resp, _ := post(t, srv.URL+"/api/v1/pki/tokens", ``); resp.StatusCode == http.StatusOK {
		t.Error("an empty request made a token")
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/pki/tokens", strings.NewReader(`{"host": "web-02"}`))
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST tokens without a bearer token: %s, want 401", r2.Status)
	}
}
