package server

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/collector/config"
	"github.com/tripwire-project/tripwire/collector/pki"
)

// TestDebugListener checks that listen.debug serves the runtime profiles on an address
// of its own, and that without it nothing serves them (not on the API's address either).
func TestDebugListener(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(filepath.Join(dir, "pki"), pki.InitOptions{ServerNames: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		debug string
	}{{"on", "127.0.0.1:0"}, {"off", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{
				Listen:  config.Listen{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0", Debug: tc.debug},
				PKI:     config.PKI{Dir: filepath.Join(dir, "pki")},
				Storage: config.Storage{DuckDB: filepath.Join(t.TempDir(), "t.duckdb")},
				API:     config.API{Tokens: []string{"change-me-now"}},
			}
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer run(t, s)()
			get := func(url string) (int, string) {
				t.Helper()
				resp, err := http.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			if tc.debug == "" {
				if s.DebugAddr() != "" {
					t.Errorf("DebugAddr = %q without listen.debug", s.DebugAddr())
				}
			} else if code, body := get("http://" + s.DebugAddr() + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
				t.Errorf("goroutine profile: %d %.80q", code, body)
			}
			if code, _ := get("http://" + s.HTTPAddr() + "/debug/pprof/"); code == http.StatusOK {
				t.Error("the API's address serves /debug/pprof/")
			}
		})
	}
}
