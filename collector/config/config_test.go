package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/yamlconf"
)

func TestLoadGood(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !strings.HasSuffix(cfg.Storage.DuckDB, filepath.Join("testdata", "data", "tripwire.duckdb")) {
		t.Errorf("duckdb path not resolved against the config dir: %q", cfg.Storage.DuckDB)
	}
	if len(cfg.API.Tokens) != 1 || cfg.Listen.GRPC != "127.0.0.1:7443" || cfg.Listen.Debug != "127.0.0.1:6060" {
		t.Errorf("decoded %+v", cfg)
	}
}

func TestLoadJWT(t *testing.T) {
	cfg, err := Load("testdata/jwt.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	j := cfg.API.JWT
	if j == nil || j.Issuer != "https://idp.example.com/realms/security" || j.Audience != "tripwire" ||
		j.JWKSURL != "https://idp.example.com/realms/security/protocol/openid-connect/certs" || len(cfg.API.Tokens) != 0 {
		t.Errorf("api = %+v (jwt %+v), want the JWT provider and no static token", cfg.API, j)
	}
}

func TestLoadFleet(t *testing.T) {
	cfg, err := Load("testdata/fleet.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	s := cfg.Storage
	if !s.Fleet() || s.DuckDB != "" || s.ClickHouse.Addr != "127.0.0.1:9000" || s.ClickHouse.Database != "tripwire" ||
		s.Postgres.DSN != "postgres://tripwire@127.0.0.1:5432/tripwire" {
		t.Errorf("storage = %+v (clickhouse %+v, postgres %+v), want the production store and no DuckDB file", s, s.ClickHouse, s.Postgres)
	}
	good, err := Load("testdata/good.yml")
	if err != nil || good.Storage.Fleet() {
		t.Errorf("good.yml: Fleet() = true or %v, want the embedded store", err)
	}
}

func TestLoadEnroll(t *testing.T) {
	cfg, err := Load("testdata/enroll.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Listen.Enroll != "0.0.0.0:7444" || cfg.PKI.AgentCertValidity != 12*time.Hour {
		t.Errorf("listen %+v, pki %+v; want the enrolment listener and a 12h validity", cfg.Listen, cfg.PKI)
	}
	good, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if good.Listen.Enroll != "" || good.PKI.AgentCertValidity != pki.DefaultAgentCertValidity {
		t.Errorf("defaults: enroll %q, validity %v; want enrolment off and %v", good.Listen.Enroll, good.PKI.AgentCertValidity, pki.DefaultAgentCertValidity)
	}
}

func TestLoadBad(t *testing.T) {
	want := map[string][]string{
		"unknown-key.bad.yml": {"unknown-key.bad.yml:5: storage.sqlite: unknown key"},
		"several.bad.yml": {
			`several.bad.yml:1: listen.grpc: "7443" is not host:port`,
			`several.bad.yml:1: listen.http: "0.0.0.0:8080" is not a loopback address`,
			`several.bad.yml:2: pki.dir: cannot read`,
			`several.bad.yml:5: api.tokens[0]: a token needs at least 8 characters`,
		},
		"storage-half.bad.yml": {
			"storage-half.bad.yml:4: storage.clickhouse: storage.postgres is missing",
			`storage-half.bad.yml:5: storage.clickhouse.addr: "clickhouse-9000" is not host:port`,
			`storage-half.bad.yml:6: storage.clickhouse.database: "1tripwire" is not a database name`,
		},
		"storage-postgres-only.bad.yml": {
			"storage-postgres-only.bad.yml:4: storage.postgres: storage.clickhouse is missing",
			"storage-postgres-only.bad.yml:4: storage.postgres.dsn: cannot parse `postgres://tripwire:xxxxx@127.0.0.1:notaport/tripwire`: invalid port",
		},
		"jwt.bad.yml":       {"jwt.bad.yml:8: api.jwt.algorithm: unknown key"},
		"debug.bad.yml":     {`debug.bad.yml:4: listen.debug: "0.0.0.0:6060" is not a loopback address`},
		"retention.bad.yml": {"retention.bad.yml:5: storage.retention_days: retention is enforced on the fleet store"},
		"jwt-values.bad.yml": {
			`jwt-values.bad.yml:6: api.jwt.issuer: "idp.example.com" is not an http(s) URL`,
			`jwt-values.bad.yml:8: api.jwt.jwks_url: "ftp://idp.example.com/certs" is not an http(s) URL`,
		},
		"jwt-empty.bad.yml": {
			"jwt-empty.bad.yml:5: api.jwt.issuer: required",
			"jwt-empty.bad.yml:5: api.jwt.audience: required",
			"jwt-empty.bad.yml:5: api.jwt.jwks_url: required",
		},
		"enroll.bad.yml": {
			`enroll.bad.yml:1: listen.enroll: "127.0.0.1:7443" is also listen.grpc or listen.http`,
			`enroll.bad.yml:1: listen.enroll: cannot read`,
			"the collector needs the CA key",
			"enroll.bad.yml:4: pki.agent_cert_validity: 30s: must be at least 1m",
		},
		"enroll-port.bad.yml": {
			`enroll-port.bad.yml:1: listen.enroll: "7444" is not host:port`,
			"enroll-port.bad.yml:4: pki.agent_cert_validity: 200000h0m0s: must be shorter than the CA's remaining life",
		},
		"validity-type.bad.yml": {"validity-type.bad.yml:2: cannot unmarshal !!int `86400` into time.Duration"},
		"storage-mixed.bad.yml": {
			"storage-mixed.bad.yml:4: storage.duckdb: cannot be set with storage.clickhouse and storage.postgres",
			"storage-mixed.bad.yml:5: storage.clickhouse.database: required",
			"storage-mixed.bad.yml:6: storage.postgres.dsn: required",
		},
	}
	// What must never appear in a message.
	secret := "s3cret"
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) != len(want) {
		t.Fatalf("fixtures %v: every fixture needs expectations", files)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			_, err := Load(f)
			var cerr *yamlconf.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load = %v, want *yamlconf.Error", err)
			}
			for _, w := range want[name] {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%s", w, err)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the DSN's password:\n%s", err)
			}
		})
	}
}
