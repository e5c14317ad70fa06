// Package pemfile reads certificates and private keys from PEM files for both ends of
// the agent–collector link, with errors that name the file and say what was wrong with
// it (missing, unreadable, not PEM, not parsable).
package pemfile

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ErrNotPEM is wrapped by errors about a file that holds no PEM block of the expected
// type.
var ErrNotPEM = errors.New("no PEM block of the expected type")

// ReadCertificates reads every CERTIFICATE block of the PEM file at path; what names the
// file in errors (e.g. "CA file").
func ReadCertificates(what, path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", what, path, err)
	}
	return ParseCertificates(what, path, data)
}

// ParseCertificates parses every CERTIFICATE block of PEM data read from path.
func ParseCertificates(what, path string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing %s %s: %w", what, path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("parsing %s %s: %w", what, path, ErrNotPEM)
	}
	return certs, nil
}

// ReadPrivateKey reads the first private key of the PEM file at path: PKCS #8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE KEY").
func ReadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file %s: %w", path, err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("parsing key file %s: %w", path, ErrNotPEM)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing key file %s: %w", path, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parsing key file %s: unsupported key type %T", path, key)
		}
		return signer, nil
	}
}
