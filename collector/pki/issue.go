package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/tripwire-project/tripwire/internal/pemfile"

	"github.com/google/uuid"
)

// IssueOptions tunes Issue.
type IssueOptions struct {
	// Validity is how long the certificate is valid; zero means DefaultHostValidity. It
	// is cut at the CA's expiry.
	Validity time.Duration
	// NewHostID gives the host a new id even if it already has a certificate. By default
	// a host issued again keeps its id, so its audit chain and history stay its own; a
	// new id makes it a new host to the collector (use it for a reinstalled machine
	// whose old chain must not be continued).
	NewHostID bool
}

// HostCert describes a host certificate written by Issue: what the collector records
// about it and where its files are.
type HostCert struct {
	// HostID is the host's id, a UUID in canonical form.
	HostID string
	// Hostname is the certificate's subject common name.
	Hostname string
	// Serial is the certificate's serial number in lower-case hex.
	Serial string
	// Fingerprint is the lower-case hex SHA-256 of the certificate's DER.
	Fingerprint string
	NotBefore   time.Time
	NotAfter    time.Time
	// Dir is the host's directory, dir/<hostname>, holding the files to ship to it.
	Dir string
	// CAFile, CertFile and KeyFile are the files to ship to the host.
	CAFile   string
	CertFile string
	KeyFile  string
	// Certificate is the parsed certificate.
	Certificate *x509.Certificate
}

// Issue issues a client certificate for hostname from the CA in dir, with a fresh
// ECDSA P-256 key, and writes dir/<hostname>/ca.crt, agent.crt and agent.key (0600; the
// directory 0700). The certificate's subject common name is hostname and its only URI
// SAN is urn:tripwire:host:<host id>. A host that already has an agent.crt keeps its
// host id unless opts.NewHostID; an agent.crt whose id cannot be read is an error
// rather than a silent new identity.
func Issue(dir, hostname string, opts IssueOptions) (HostCert, error) {
	if err := ValidateHostname(hostname); err != nil {
		return HostCert{}, fmt.Errorf("issuing host certificate: %w", err)
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultHostValidity
	}
	if validity < 0 {
		return HostCert{}, fmt.Errorf("issuing host certificate for %s: %w", hostname,
			&InvalidFieldError{Field: "validity", Value: validity.String(), Reason: "must be positive"})
	}
	ca, err := loadCA(dir)
	if err != nil {
		return HostCert{}, fmt.Errorf("issuing host certificate for %s: %w", hostname, err)
	}

	hostDir := filepath.Join(dir, hostname)
	certPath := filepath.Join(hostDir, AgentCertFile)
	keyPath := filepath.Join(hostDir, AgentKeyFile)
	caPath := filepath.Join(hostDir, CACertFile)

	hostID := ""
	if !opts.NewHostID {
		hostID, err = existingHostID(certPath)
		if err != nil {
			return HostCert{}, fmt.Errorf("issuing host certificate for %s: %w", hostname, err)
		}
	}
	if hostID == "" {
		id, err := uuid.NewRandom()
		if err != nil {
			return HostCert{}, fmt.Errorf("issuing host certificate for %s: generating host id: %w", hostname, err)
		}
		hostID = id.String()
	}

	der, key, err := ca.signNewKey(hostTemplate(hostID, hostname), validity)
	if err != nil {
		return HostCert{}, fmt.Errorf("issuing host certificate for %s: %w", hostname, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return HostCert{}, fmt.Errorf("issuing host certificate for %s: parsing the new certificate: %w", hostname, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return HostCert{}, fmt.Errorf("issuing host certificate for %s: %w", hostname, err)
	}

	if err := ensureDir(hostDir); err != nil {
		return HostCert{}, fmt.Errorf("issuing host certificate for %s: %w", hostname, err)
	}
	// Key before certificate: an agent reloading in between sees a mismatched pair,
	// refuses it and keeps its old one, instead of running with a half-written file.
	for _, f := range []struct {
		path string
		data []byte
		mode fs.FileMode
	}{
		{caPath, ca.certPEM, certMode},
		{keyPath, keyPEM, keyMode},
		{certPath, encodeCert(der), certMode},
	} {
		if err := pemfile.WriteFileAtomic(f.path, f.data, f.mode); err != nil {
			return HostCert{}, fmt.Errorf("issuing host certificate for %s: %w", hostname, err)
		}
	}

	sum := sha256.Sum256(der)
	return HostCert{
		HostID:      hostID,
		Hostname:    hostname,
		Serial:      cert.SerialNumber.Text(16),
		Fingerprint: hex.EncodeToString(sum[:]),
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
		Dir:         hostDir,
		CAFile:      caPath,
		CertFile:    certPath,
		KeyFile:     keyPath,
		Certificate: cert,
	}, nil
}

// hostTemplate is the shape of every host certificate, whether Issue makes its key or
// the host sent a signing request (Signer): the subject common name is the host name,
// the one URI SAN urn:tripwire:host:<id> is its identity (HostIdentity), and it may
// authenticate a TLS client only.
func hostTemplate(hostID, hostname string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"Tripwire"}, CommonName: hostname},
		URIs:        []*url.URL{hostURI(hostID)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// existingHostID returns the host id in the certificate at path, or "" if there is no
// file.
func existingHostID(path string) (string, error) {
	certs, err := pemfile.ReadCertificates("certificate", path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading existing host id (set NewHostID to replace it): %w", err)
	}
	id, _, err := HostIdentity(certs[0])
	if err != nil {
		return "", fmt.Errorf("reading existing host id from %s (set NewHostID to replace it): %w", path, err)
	}
	return id, nil
}

// InvalidFieldError says that an input field has a value Issue, Init or IssueServer
// cannot use.
type InvalidFieldError struct {
	// Field names the input, e.g. "hostname".
	Field string
	// Value is the rejected value.
	Value string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *InvalidFieldError) Error() string {
	v := e.Value
	if len(v) > 80 {
		v = v[:80] + "..."
	}
	return fmt.Sprintf("invalid %s %q: %s", e.Field, v, e.Reason)
}

// maxNameLen and maxLabelLen are the DNS limits on a name and one of its labels.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// ValidateHostname checks that name can be a host's name: 1 to 253 characters from
// A-Z, a-z, 0-9, '.', '_' and '-', in dot-separated labels of 1 to 63 characters that do
// not start with '-'. The name becomes a directory under the PKI directory, so this is
// also what keeps it from escaping it. The error is an *InvalidFieldError.
func ValidateHostname(name string) error {
	return validateName("hostname", name)
}

// validateName is ValidateHostname with the field named in the error.
func validateName(field, name string) error {
	bad := func(reason string) error {
		return &InvalidFieldError{Field: field, Value: name, Reason: reason}
	}
	switch {
	case name == "":
		return bad("must not be empty")
	case len(name) > maxNameLen:
		return bad(fmt.Sprintf("longer than %d characters", maxNameLen))
	case strings.Contains(name, "/") || strings.Contains(name, `\`):
		return bad("must not contain a slash")
	case strings.Contains(name, ".."):
		return bad(`must not contain ".."`)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return bad(fmt.Sprintf("character %q not allowed (use A-Z, a-z, 0-9, '.', '_', '-')", r))
		}
	}
	for _, label := range strings.Split(name, ".") {
		switch {
		case label == "":
			return bad("must not start or end with '.'")
		case len(label) > maxLabelLen:
			return bad(fmt.Sprintf("label %q longer than %d characters", label, maxLabelLen))
		case label[0] == '-':
			return bad(fmt.Sprintf("label %q must not start with '-'", label))
		}
	}
	return nil
}
