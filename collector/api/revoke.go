package api

import (
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

var serialRE = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// revoke records a host certificate as revoked: POST /api/v1/pki/revoke with
// {"host": NAME or ID} (the certificate it last registered with) or {"serial": HEX,
// "host": NAME} (any certificate, e.g. one never used), and an optional "reason". Every
// collector replica refuses it within a second, at the handshake and on open streams.
func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Host   string `json:"host"`
		Serial string `json:"serial"`
		Reason string `json:"reason"`
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
	if body.Reason == "" {
		body.Reason = "revoked by " + Subject(r.Context())
	}
	hosts, err := a.opts.Store.Hosts(r.Context())
	if err != nil {
		a.storeError(w, "listing hosts", err)
		return
	}
	rc := storage.RevokedCert{Serial: body.Serial, Hostname: body.Host, RevokedAt: time.Now().UTC(), Reason: body.Reason}
	for _, h := range hosts {
		if h.Hostname == body.Host || h.HostID == body.Host {
			rc.HostID, rc.Hostname = h.HostID, h.Hostname
			if rc.Serial == "" {
				rc.Serial = h.CertSerial
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
