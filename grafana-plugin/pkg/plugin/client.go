package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// requestTimeout bounds every call to the collector but the live stream.
const requestTimeout = 30 * time.Second

// collector calls the collector's REST API. It is safe for concurrent use.
type collector struct {
	base  string
	token string
	http  *http.Client
}

// APIError is a response of the collector other than 200.
type APIError struct {
	Method, Path string
	Status       int
	// Msg and Param are the collector's {"error": ..., "param": ...}.
	Msg, Param string
}

func (e *APIError) Error() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("%s %s: the collector refused the API token (401): check secureJsonData.apiToken", e.Method, e.Path)
	case http.StatusNotFound:
		if e.Msg == "" || e.Msg == "404 page not found" {
			return fmt.Sprintf("%s %s: not found (404): the collector is older than this plugin and lacks this endpoint", e.Method, e.Path)
		}
	}
	return fmt.Sprintf("%s %s: collector answered %d: %s", e.Method, e.Path, e.Status, e.Msg)
}

// ConnError is a failure to reach the collector at all; TLS says whether the TLS
// handshake (certificate, protocol) is what failed.
type ConnError struct {
	URL string
	TLS bool
	Err error
}

func (e *ConnError) Error() string {
	if e.TLS {
		return fmt.Sprintf("TLS with the collector at %s failed: %v (check jsonData.tlsAuthWithCACert and secureJsonData.tlsCACert)", e.URL, e.Err)
	}
	return fmt.Sprintf("cannot reach the collector at %s: %v", e.URL, e.Err)
}

func (e *ConnError) Unwrap() error { return e.Err }

// do sends a request and returns the response when it is a 200; the caller closes it.
func (c *collector) do(ctx context.Context, method, path string, q url.Values, body any, accept string) (*http.Response, error) {
	u := c.base + "/api/v1/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the %s body: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ConnError{URL: c.base, TLS: isTLSError(err), Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readAPIError(resp, method, path)
	}
	return resp, nil
}

func readAPIError(resp *http.Response, method, path string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{Method: method, Path: "/api/v1/" + path, Status: resp.StatusCode}
	var body struct {
		Error string `json:"error"`
		Param string `json:"param"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		e.Msg, e.Param = body.Error, body.Param
	} else {
		e.Msg = string(bytes.TrimSpace(b))
	}
	return e
}

// getJSON GETs path and decodes its JSON body into out.
func (c *collector) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, path, q, nil, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the collector's answer to GET /api/v1/%s: %w", path, err)
	}
	return nil
}

func isTLSError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		rerr tls.RecordHeaderError
		aerr tls.AlertError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &rerr) || errors.As(err, &aerr) ||
		errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr)
}

// isConnRefused says whether nothing listens at the collector's address.
func isConnRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
