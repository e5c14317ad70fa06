package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/tripwire-project/tripwire/collector/config"
)

// apiClient reaches a collector's REST API, as the alerts, sql and rules commands do.
type apiClient struct {
	base, token string
}

// apiFlags registers --config, --url and --token on fs; the returned function resolves
// them once fs is parsed.
func apiFlags(fs *flag.FlagSet, cmd string) func() (*apiClient, error) {
	cfgPath := fs.String("config", "", "read the API address and a token from this collector.yaml")
	base := fs.String("url", "", "API base URL (default http://127.0.0.1:8080, or listen.http of --config)")
	token := fs.String("token", os.Getenv("TRIPWIRE_TOKEN"), "bearer token (default $TRIPWIRE_TOKEN, or the first of --config)")
	return func() (*apiClient, error) {
		c := &apiClient{base: *base, token: *token}
		if *cfgPath != "" {
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return nil, err
			}
			if c.base == "" {
				c.base = "http://" + cfg.Listen.HTTP
			}
			if c.token == "" && len(cfg.API.Tokens) > 0 {
				c.token = cfg.API.Tokens[0]
			}
		}
		if c.base == "" {
			c.base = "http://127.0.0.1:8080"
		}
		if c.token == "" {
			return nil, usageError(cmd + ": a token is required (--token, $TRIPWIRE_TOKEN or --config)")
		}
		return c, nil
	}
}

// do sends a request with a JSON body (nil for none) and returns the response when its
// status is 200, or an *httpError.
func (c *apiClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &httpError{resp.StatusCode, string(b)}
	}
	return resp, nil
}

// doJSON sends a request and decodes the JSON answer into out.
func (c *apiClient) doJSON(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
	}
	return nil
}
