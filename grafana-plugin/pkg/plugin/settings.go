package plugin

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// Settings are a data source's configuration: jsonData plus the decrypted secrets.
type Settings struct {
	// URL is the collector's API base URL, e.g. http://127.0.0.1:8080.
	URL string `json:"url"`
	// TLSSkipVerify accepts any server certificate (for testing only).
	TLSSkipVerify bool `json:"tlsSkipVerify"`
	// TLSAuthWithCACert verifies the server against TLSCACert instead of the system roots.
	TLSAuthWithCACert bool `json:"tlsAuthWithCACert"`

	// APIToken (secureJsonData.apiToken) is the bearer token sent to the collector.
	APIToken string `json:"-"`
	// TLSCACert (secureJsonData.tlsCACert) is a PEM CA certificate.
	TLSCACert string `json:"-"`
}

// SettingsError is a data source configuration that cannot work; Field names the key.
type SettingsError struct {
	Field, Msg string
}

func (e *SettingsError) Error() string {
	return fmt.Sprintf("data source setting %s: %s", e.Field, e.Msg)
}

// LoadSettings decodes and validates a data source's settings. Every problem is reported,
// each naming its key. Keys of jsonData other than the three above are ignored: Grafana
// itself keeps some there.
func LoadSettings(s backend.DataSourceInstanceSettings) (Settings, error) {
	var st Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &st); err != nil {
			return st, &SettingsError{"jsonData", err.Error()}
		}
	}
	if st.URL == "" {
		st.URL = s.URL // the data source's top-level URL, when jsonData has none
	}
	st.APIToken = s.DecryptedSecureJSONData["apiToken"]
	st.TLSCACert = s.DecryptedSecureJSONData["tlsCACert"]
	return st, st.validate()
}

func (st Settings) validate() error {
	var errs []error
	u, err := url.Parse(st.URL)
	switch {
	case st.URL == "":
		errs = append(errs, &SettingsError{"jsonData.url", "is empty: set the collector's API base URL, e.g. http://127.0.0.1:8080"})
	case err != nil:
		errs = append(errs, &SettingsError{"jsonData.url", err.Error()})
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		errs = append(errs, &SettingsError{"jsonData.url", fmt.Sprintf("%q is not an http:// or https:// URL with a host", st.URL)})
	}
	if st.APIToken == "" {
		errs = append(errs, &SettingsError{"secureJsonData.apiToken", "is empty: set one of the collector's api.tokens (or a JWT it accepts)"})
	}
	if st.TLSAuthWithCACert {
		if st.TLSCACert == "" {
			errs = append(errs, &SettingsError{"secureJsonData.tlsCACert", "is empty but jsonData.tlsAuthWithCACert is true"})
		} else if !x509.NewCertPool().AppendCertsFromPEM([]byte(st.TLSCACert)) {
			errs = append(errs, &SettingsError{"secureJsonData.tlsCACert", "holds no PEM certificate"})
		}
	}
	return errors.Join(errs...)
}

// httpClient returns the client for the collector; it has no overall timeout, because
// the live stream is one long response: requests carry their own deadlines.
func (st Settings) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: st.TLSSkipVerify}
	if st.TLSAuthWithCACert {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(st.TLSCACert))
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: tr}
}

// baseURL is the URL without a trailing slash.
func (st Settings) baseURL() string { return strings.TrimRight(st.URL, "/") }
