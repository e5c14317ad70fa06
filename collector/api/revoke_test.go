package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/collector/api"
	"github.com/tripwire-project/tripwire/storage"
)

// TestRevoke: revoking a host records the certificate it last registered with and that
// certificate's key; a named certificate is revoked with the key given; bad fields are
// refused by name, and a host with no known certificate is a 404.
func TestRevoke(t *testing.T) {
	store := newStore(t)
	key := strings.Repeat("5a", 32)
	now := time.Now().UTC()
	if err := store.RegisterHost(context.Background(), storage.Host{HostID: "3f7c1f7e-8a57-4a4b-9d1c-2b6f0e6f1a01", Hostname: "web-01",
		LastSeen: now, CertSerial: "1f2e", CertKey: key}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Options{Store: store, Tokens: []string{token}}))
	defer srv.Close()

	for _, tc := range []struct{ body, field string }{
		{`{"serial": "1f2e"}`, "host"},
		{`{"host": "web-01", "serial": "XYZ"}`, "serial"},
		{`{"host": "web-01", "serial": "1f2e", "key_sha256": "abc"}`, "key_sha256"},
		{`{"host": "web-01", "key_sha256": "` + strings.ToUpper(key) + `"}`, "key_sha256"},
	} {
		resp, body := post(t, srv.URL+"/api/v1/pki/revoke", tc.body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.field) {
			t.Errorf("POST %s: %s %s, want 400 naming %q", tc.body, resp.Status, body, tc.field)
		}
	}
	if resp, body := post(t, srv.URL+"/api/v1/pki/revoke", `{"host": "db-09"}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoking an unknown host: %s %s, want 404", resp.Status, body)
	}
	if got, err := store.Revoked(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("refused requests revoked %+v (%v)", got, err)
	}

	resp, body := post(t, srv.URL+"/api/v1/pki/revoke", `{"host": "web-01", "reason": "stolen laptop"}`)
	var rc storage.RevokedCert
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rc) != nil || rc.Serial != "1f2e" || rc.KeySHA256 != key || rc.Reason != "stolen laptop" {
		t.Fatalf("revoking web-01: %s %s, want serial 1f2e with its key", resp.Status, body)
	}
	other := strings.Repeat("0c", 32)
	rc = storage.RevokedCert{}
	resp, body = post(t, srv.URL+"/api/v1/pki/revoke", `{"host": "web-01", "serial": "77", "key_sha256": "`+other+`"}`)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rc) != nil || rc.Serial != "77" || rc.KeySHA256 != other {
		t.Fatalf("revoking a named certificate: %s %s", resp.Status, body)
	}
	rc = storage.RevokedCert{}
	resp, body = post(t, srv.URL+"/api/v1/pki/revoke", `{"host": "web-01", "serial": "78"}`)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rc) != nil || rc.Serial != "78" || rc.KeySHA256 != "" {
		t.Fatalf("a named certificate that is not the host's current one takes no key of the host's: %s %s", resp.Status, body)
	}
	got, err := store.Revoked(t.Context())
	if err != nil || len(got) != 3 || got[0].KeySHA256 != key || got[1].KeySHA256 != other || got[2].KeySHA256 != "" {
		t.Errorf("Revoked = %+v (%v)", got, err)
	}
}
