package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/pemfile"
	"github.com/tripwire-project/tripwire/storage"
)

// revokeCmd revokes a host certificate through the API (POST /api/v1/pki/revoke), so
// that it works while the collector runs and reaches every replica: the certificate
// the host last registered with, or the one in --cert, and with it their key.
func revokeCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pki revoke", flag.ContinueOnError)
	client := apiFlags(fs, "pki revoke")
	host := fs.String("host", "", "the host's name or id (required)")
	certFile := fs.String("cert", "", "revoke this certificate file instead of the one the host last registered with")
	reason := fs.String("reason", "", "why, for the record")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *host == "" || fs.NArg() > 0 {
		return usageError("pki revoke: --host is required")
	}
	body := map[string]string{"host": *host, "reason": *reason}
	if *certFile != "" {
		certs, err := pemfile.ReadCertificates("certificate", *certFile)
		if err != nil {
			return err
		}
		body["serial"], body["key_sha256"] = pki.SerialHex(certs[0]), pki.KeyHash(certs[0])
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var rc storage.RevokedCert
	if err := c.doJSON(ctx, http.MethodPost, "/api/v1/pki/revoke", body, &rc); err != nil {
		return fmt.Errorf("revoking: %w", err)
	}
	fmt.Fprintf(stdout, "revoked certificate serial %s of host %s (%s)\n", rc.Serial, rc.Hostname, rc.Reason)
	if rc.KeySHA256 != "" {
		fmt.Fprintf(stdout, "revoked its key (SHA-256 %s): every certificate with it, renewed ones included, is refused; issue the host a new key (pki issue, or enroll again)\n", rc.KeySHA256)
	}
	return nil
}
