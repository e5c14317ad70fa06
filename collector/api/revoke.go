package api

import (
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

var (
	serialRE = regexp.MustCompile(`^[0-9a-f]{1,64}$`)
	keyRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// revoke records a host certificate as revoked: POST /api/v1/pki/revoke with
// {"host": NAME or ID} (the certificate it last registered with, and its key) or
// {"serial": HEX, "host": NAME} (any certificate, e.g. one never used, with its
// "key_sha256" when known), and an optional "reason". A revoked key refuses every
// certificate that carries it: the ones the host renewed before (renewal keeps the key)
// fall too. Every collector replica refuses them within a second, at the handshake and
// on open streams.
func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Host      string `json:"host"`
		Serial    string `json:"serial"`
		KeySHA256 string `json:"key_sha256"`
		Reason    string `json:"reason"`
	}
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, err)
		return
	}
	if body.Host == "" {
		badRequest(w, &paramError{"host", "required: the host name or id"})
		return
	}
	if body.Serial != "" && !serialRE.MatchString(body.Serial) {
		badRequest(w, &paramError{"serial", fmt.Sprintf("%q is not a certificate serial in lowercase hex", body.Serial)})
		return
	}
	if body.KeySHA256 != "" && !keyRE.MatchString(body.KeySHA256) {
		badRequest(w, &paramError{"key_sha256", fmt.Sprintf("%q is not a SHA-256 in lowercase hex (64 characters)", body.KeySHA256)})
		return
	}
	if body.Reason == "" {
		body.Reason = "revoked by " + Subject(r.Context())
	}
	hosts, err := a.opts.Store.Hosts(r.Context())
	if err != nil {
		a.storeError(w, "listing hosts", err)
		return
	}
	rc := storage.RevokedCert{Serial: body.Serial, KeySHA256: body.KeySHA256, Hostname: body.Host, RevokedAt: time.Now().UTC(), Reason: body.Reason}
	for _, h := range hosts {
		if h.Hostname == body.Host || h.HostID == body.Host {
			rc.HostID, rc.Hostname = h.HostID, h.Hostname
			if rc.Serial == "" {
				rc.Serial = h.CertSerial
			}
			if rc.KeySHA256 == "" && rc.Serial == h.CertSerial {
				rc.KeySHA256 = h.CertKey
			}
		}
	}
	if rc.Serial == "" {
		writeError(w, http.StatusNotFound, "host", fmt.Sprintf("no certificate known for host %q: it never registered; revoke its certificate file by serial (pki revoke --cert FILE)", body.Host))
		return
	}
	if err := a.opts.Store.Revoke(r.Context(), rc); err != nil {
		a.storeError(w, "revoking", err)
		return
	}
	writeJSON(w, http.StatusOK, rc)
}
