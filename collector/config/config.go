// Package config loads and validates the collector's collector.yaml, strictly: unknown
// keys and bad values refuse to start, every problem reported at once with file, line and
// key.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/internal/yamlconf"
)

// Config is the collector's whole configuration.
type Config struct {
	Listen  Listen  `yaml:"listen"`
	PKI     PKI     `yaml:"pki"`
	Storage Storage `yaml:"storage"`
	API     API     `yaml:"api"`
	// DeadManSeconds is how long a host may go without a heartbeat (agents send one
	// every 5 s) before it is marked OFFLINE and a CRITICAL host event is raised.
	DeadManSeconds int `yaml:"dead_man_seconds"`
}

// DefaultDeadManSeconds is DeadManSeconds when unset.
const DefaultDeadManSeconds = 15

// Listen holds the collector's listen addresses.
type Listen struct {
	// GRPC is where agents connect (mutual TLS).
	GRPC string `yaml:"grpc"`
	// HTTP serves the REST API and /healthz.
	HTTP string `yaml:"http"`
	// Enroll, if set, serves enrolment: hosts without a certificate redeem a join token
	// there (TLS, no client certificate; see docs/adr/0013). Empty disables enrolment,
	// and the API refuses to make tokens.
	Enroll string `yaml:"enroll"`
	// Debug, if set, serves Go's runtime profiles (/debug/pprof/) for diagnosing the
	// collector under load, without a token: it must be a loopback address. Unset (the
	// default), nothing listens.
	Debug string `yaml:"debug"`
}

// PKI names the directory made by `tripwire-collector pki init`, and how long the
// certificates the collector signs for agents are valid.
type PKI struct {
	Dir string `yaml:"dir"`
	// AgentCertValidity is the validity of the certificates the collector signs for
	// agents, at enrolment and at each renewal over the stream (agents renew once two
	// thirds of it have passed): at least 1m, shorter than the CA's remaining life.
	// Default 24h. It does not apply to `pki issue`, which has --validity.
	AgentCertValidity time.Duration `yaml:"agent_cert_validity"`
}

// Storage picks the backend. With nothing else configured the collector keeps
// everything in one embedded DuckDB file (DuckDB); with both ClickHouse and Postgres set
// it keeps the history in ClickHouse and the index in PostgreSQL (storage/fleet). The
// two go together: setting one alone is an error.
type Storage struct {
	DuckDB     string      `yaml:"duckdb"`
	ClickHouse *ClickHouse `yaml:"clickhouse"`
	Postgres   *Postgres   `yaml:"postgres"`
	// RetentionDays, on the fleet store, keeps at least this many days of history:
	// older entries go a whole month at a time, by dropping ClickHouse partitions. 0
	// keeps everything.
	RetentionDays int `yaml:"retention_days"`
}

// ClickHouse names the ClickHouse server that keeps the entries' history.
type ClickHouse struct {
	// Addr is the host:port of the native protocol (usually port 9000).
	Addr string `yaml:"addr"`
	// Database is created on first start if it does not exist.
	Database string `yaml:"database"`
}

// Postgres names the PostgreSQL database that is the source of truth.
type Postgres struct {
	// DSN is a libpq connection string or URL naming an existing database.
	DSN string `yaml:"dsn"`
}

// Fleet reports whether the ClickHouse and PostgreSQL store is configured (rather than
// the embedded DuckDB file).
func (s Storage) Fleet() bool { return s.ClickHouse != nil && s.Postgres != nil }

// API configures the REST API. A request needs a bearer token: one of Tokens, or a JWT
// that JWT validates. At least one of the two is configured.
type API struct {
	// Tokens are the static bearer tokens accepted by the API.
	Tokens []string `yaml:"tokens"`
	// JWT, if set, accepts RS256 JSON Web Tokens from an identity provider.
	JWT *JWT `yaml:"jwt"`
}

// JWT names the identity provider whose tokens the API accepts: RS256 JWTs signed by a
// key of its JWKS, with this issuer and audience.
type JWT struct {
	// Issuer is the exact iss claim, e.g. https://idp.example.com/realms/sec.
	Issuer string `yaml:"issuer"`
	// Audience must be one of the token's aud claim.
	Audience string `yaml:"audience"`
	// JWKSURL is where the provider publishes its signing keys (JSON Web Key Set).
	JWKSURL string `yaml:"jwks_url"`
}

// Defaults.
const (
	DefaultGRPC   = "127.0.0.1:7443"
	DefaultHTTP   = "127.0.0.1:8080"
	DefaultDuckDB = "data/tripwire.duckdb"
	minTokenLen   = 8
)

// Load reads, decodes and validates the config at path; relative paths inside it are
// resolved against its directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg := &Config{}
	root, err := yamlconf.Decode(path, data, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Listen.GRPC == "" {
		cfg.Listen.GRPC = DefaultGRPC
	}
	if cfg.Listen.HTTP == "" {
		cfg.Listen.HTTP = DefaultHTTP
	}
	if cfg.DeadManSeconds == 0 {
		cfg.DeadManSeconds = DefaultDeadManSeconds
	}
	validitySet := cfg.PKI.AgentCertValidity != 0
	if !validitySet {
		cfg.PKI.AgentCertValidity = pki.DefaultAgentCertValidity
	}
	duckdbSet := cfg.Storage.DuckDB != ""
	if cfg.Storage.DuckDB == "" && cfg.Storage.ClickHouse == nil && cfg.Storage.Postgres == nil {
		cfg.Storage.DuckDB = DefaultDuckDB
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&cfg.PKI.Dir, &cfg.Storage.DuckDB} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	v := yamlconf.NewValidator(path, root)
	cfg.validate(v)
	cfg.validateEnrolment(v, validitySet)
	cfg.Storage.validate(v, duckdbSet)
	if cfg.DeadManSeconds < 6 || cfg.DeadManSeconds > 86400 {
		v.Add(fmt.Sprintf("%d is out of range 6..86400: agents send a heartbeat every 5 s", cfg.DeadManSeconds), "dead_man_seconds")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// clickhouseDatabase is what the store accepts as a ClickHouse database name.
var clickhouseDatabase = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks the choice of backend and the production store's keys.
func (s Storage) validate(v *yamlconf.Validator, duckdbSet bool) {
	switch {
	case s.ClickHouse != nil && s.Postgres == nil:
		v.Add("storage.postgres is missing: ClickHouse keeps the history and PostgreSQL the index, so they are configured together", "storage", "clickhouse")
	case s.Postgres != nil && s.ClickHouse == nil:
		v.Add("storage.clickhouse is missing: ClickHouse keeps the history and PostgreSQL the index, so they are configured together", "storage", "postgres")
	case s.Fleet() && duckdbSet:
		v.Add("cannot be set with storage.clickhouse and storage.postgres: the collector uses one store", "storage", "duckdb")
	}
	if c := s.ClickHouse; c != nil {
		if c.Addr == "" {
			v.Add("required: host:port of ClickHouse's native protocol, e.g. 127.0.0.1:9000", "storage", "clickhouse", "addr")
		} else if err := yamlconf.HostPort(c.Addr); err != nil {
			v.Add(err.Error(), "storage", "clickhouse", "addr")
		}
		if c.Database == "" {
			v.Add("required, e.g. tripwire", "storage", "clickhouse", "database")
		} else if !clickhouseDatabase.MatchString(c.Database) {
			v.Add(fmt.Sprintf("%q is not a database name: letters, digits and _, not starting with a digit", c.Database), "storage", "clickhouse", "database")
		}
	}
	switch {
	case s.RetentionDays < 0 || s.RetentionDays > 36500:
		v.Add(fmt.Sprintf("%d is out of range 0..36500 (0 keeps everything)", s.RetentionDays), "storage", "retention_days")
	case s.RetentionDays > 0 && !s.Fleet():
		v.Add("retention is enforced on the fleet store (storage.clickhouse and storage.postgres) only", "storage", "retention_days")
	}
	if p := s.Postgres; p != nil {
		if p.DSN == "" {
			v.Add(`required, e.g. "postgres://tripwire@127.0.0.1:5432/tripwire"`, "storage", "postgres", "dsn")
		} else if _, err := pgconn.ParseConfig(p.DSN); err != nil {
			// pgconn redacts any password of the DSN in its message.
			v.Add(err.Error(), "storage", "postgres", "dsn")
		}
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validate(v *yamlconf.Validator) {
	if err := yamlconf.HostPort(c.Listen.GRPC); err != nil {
		v.Add(err.Error(), "listen", "grpc")
	}
	if err := yamlconf.HostPort(c.Listen.HTTP); err != nil {
		v.Add(err.Error(), "listen", "http")
	} else if host, _, _ := net.SplitHostPort(c.Listen.HTTP); !isLoopback(host) {
		// Bearer tokens would cross the network in clear text.
		v.Add(fmt.Sprintf("%q is not a loopback address: the API speaks plain HTTP, so bind it to loopback and put a TLS proxy in front", c.Listen.HTTP), "listen", "http")
	}
	if c.Listen.Debug != "" {
		if err := yamlconf.HostPort(c.Listen.Debug); err != nil {
			v.Add(err.Error(), "listen", "debug")
		} else if host, _, _ := net.SplitHostPort(c.Listen.Debug); !isLoopback(host) {
			// Profiles need no token and show the process's memory.
			v.Add(fmt.Sprintf("%q is not a loopback address: the profiles are served without a token", c.Listen.Debug), "listen", "debug")
		}
	}
	if c.PKI.Dir == "" {
		v.Add("required (make one with: tripwire-collector pki init --dir DIR)", "pki", "dir")
	} else {
		for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
			if err := yamlconf.Readable(filepath.Join(c.PKI.Dir, f)); err != nil {
				v.Add(err.Error()+" (make it with: tripwire-collector pki init --dir "+c.PKI.Dir+")", "pki", "dir")
			}
		}
	}
	if len(c.API.Tokens) == 0 && c.API.JWT == nil {
		v.Add("at least one bearer token (or api.jwt) is required: the API is never open", "api", "tokens")
	}
	if j := c.API.JWT; j != nil {
		j.validate(v)
	}
	for i, t := range c.API.Tokens {
		if len(t) < minTokenLen {
			v.Add(fmt.Sprintf("a token needs at least %d characters", minTokenLen), "api", "tokens", i)
		}
	}
}

// validateEnrolment checks listen.enroll and pki.agent_cert_validity: the enrolment
// listener needs the CA key, which signs there, and the validity must fit the CA.
func (c *Config) validateEnrolment(v *yamlconf.Validator, validitySet bool) {
	if c.Listen.Enroll != "" {
		if err := yamlconf.HostPort(c.Listen.Enroll); err != nil {
			v.Add(err.Error(), "listen", "enroll")
		} else if c.Listen.Enroll == c.Listen.GRPC || c.Listen.Enroll == c.Listen.HTTP {
			v.Add(fmt.Sprintf("%q is also listen.grpc or listen.http: enrolment needs its own port (it asks for no client certificate)", c.Listen.Enroll), "listen", "enroll")
		}
		if c.PKI.Dir != "" {
			if err := yamlconf.Readable(filepath.Join(c.PKI.Dir, pki.CAKeyFile)); err != nil {
				v.Add(err.Error()+": enrolment signs certificates, so the collector needs the CA key", "listen", "enroll")
			}
		}
	}
	where := []any{"pki", "agent_cert_validity"}
	if !validitySet {
		where = []any{"pki"}
	}
	// An unreadable CA is reported under pki.dir; the validity is then checked alone.
	var ca *x509.Certificate
	if c.PKI.Dir != "" {
		if cas, err := pemfile.ReadCertificates("CA certificate", filepath.Join(c.PKI.Dir, pki.CACertFile)); err == nil {
			ca = cas[0]
		}
	}
	if err := pki.CheckAgentCertValidity(c.PKI.AgentCertValidity, ca, time.Now()); err != nil {
		var fe *pki.InvalidFieldError
		if errors.As(err, &fe) {
			err = errors.New(fe.Reason)
		}
		v.Add(fmt.Sprintf("%s: %v", c.PKI.AgentCertValidity, err), where...)
	}
}

func (j *JWT) validate(v *yamlconf.Validator) {
	for _, u := range [...]struct{ key, v, eg string }{
		{"issuer", j.Issuer, "https://idp.example.com/realms/security"},
		{"jwks_url", j.JWKSURL, "https://idp.example.com/realms/security/protocol/openid-connect/certs"},
	} {
		if u.v == "" {
			v.Add("required, e.g. "+u.eg, "api", "jwt", u.key)
		} else if err := httpURL(u.v); err != nil {
			v.Add(err.Error(), "api", "jwt", u.key)
		}
	}
	if j.Audience == "" {
		v.Add("required: the aud the identity provider puts in tokens for the collector, e.g. tripwire", "api", "jwt", "audience")
	}
}

// httpURL checks that s is an absolute http or https URL with a host.
func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
