package api

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/proto/jointoken"
	"github.com/tripwire-project/tripwire/storage"
)

// Join token lifetimes: the default, and the bounds of the ttl parameter. A join token
// is a credential until used, so it should live as long as the rollout that needs it.
const (
	DefaultTokenTTL = time.Hour
	MinTokenTTL     = time.Second
	MaxTokenTTL     = 7 * 24 * time.Hour
)

// EnrolOptions turn on the join token routes: the collector serves enrolment.
type EnrolOptions struct {
	// CACertificate returns the CA that signs enrolled hosts; tokens pin it.
	CACertificate func() *x509.Certificate
	// Address is the enrolment listener's address (listen.enroll, with the port it was
	// given when the config says 0), for the enrol command the CLI prints.
	Address string
}

// TokenResponse is the answer of POST /api/v1/pki/tokens: the token, shown this once
// (the store keeps only its secret's hash), and what it enrols.
type TokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Hostname  string    `json:"hostname"`
	HostID    string    `json:"host_id"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedBy string    `json:"created_by"`
	// EnrollAddress is the enrolment listener's address; CASHA256 the CA's pin, as the
	// token carries it.
	EnrollAddress string `json:"enroll_address"`
	CASHA256      string `json:"ca_sha256"`
}

// TokenInfo is a join token as GET /api/v1/pki/tokens lists it: never its secret.
type TokenInfo struct {
	storage.JoinToken
	// State is unused, used or expired.
	State string `json:"state"`
}

// enrolmentDisabled is the answer of the token routes when listen.enroll is not set.
func enrolmentDisabled(w http.ResponseWriter) {
	writeError(w, http.StatusConflict, "", "enrolment is disabled on this collector: set listen.enroll in collector.yaml and restart it, "+
		"or issue a certificate by hand (tripwire-collector pki issue)")
}

// makeToken serves POST /api/v1/pki/tokens with {"host": NAME, "ttl": "1h"}: a one-time
// join token that enrols one host under NAME with a new host id. Any collector replica
// redeems it, once, before it expires.
func (a *API) makeToken(w http.ResponseWriter, r *http.Request) {
	if a.opts.Enrol == nil {
		enrolmentDisabled(w)
		return
	}
	var body struct {
		Host string `json:"host"`
		TTL  string `json:"ttl"`
	}
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, err)
		return
	}
	if err := pki.ValidateHostname(body.Host); err != nil {
		badRequest(w, &paramError{"host", err.Error()})
		return
	}
	ttl := DefaultTokenTTL
	if body.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(body.TTL); err != nil || ttl < MinTokenTTL || ttl > MaxTokenTTL {
			badRequest(w, &paramError{"ttl", fmt.Sprintf("%q is not a duration from %s to %s (e.g. 1h, 30m)", body.TTL, MinTokenTTL, MaxTokenTTL)})
			return
		}
	}
	ca := a.opts.Enrol.CACertificate()
	tok, err := jointoken.New(ca.Raw)
	if err != nil {
		a.opts.Logger.Error("making join token", "err", err)
		writeError(w, http.StatusInternalServerError, "", "making join token: no randomness")
		return
	}
	hostID, err := uuid.NewRandom()
	if err != nil {
		a.opts.Logger.Error("making join token", "err", err)
		writeError(w, http.StatusInternalServerError, "", "making join token: no randomness")
		return
	}
	now := time.Now().UTC()
	rec := storage.JoinToken{
		ID: tok.ID, SecretSHA256: tok.SecretSHA256(), Hostname: body.Host, HostID: hostID.String(),
		CreatedAt: now, CreatedBy: Subject(r.Context()), ExpiresAt: now.Add(ttl),
	}
	if err := a.opts.Store.AddJoinToken(r.Context(), rec); err != nil {
		a.storeError(w, "recording join token", err)
		return
	}
	a.opts.Logger.Info("join token made", "token_id", rec.ID, "host", rec.Hostname, "host_id", rec.HostID,
		"expires_at", rec.ExpiresAt.Format(time.RFC3339), "by", rec.CreatedBy)
	writeJSON(w, http.StatusOK, TokenResponse{
		Token: tok.String(), ID: rec.ID, Hostname: rec.Hostname, HostID: rec.HostID, ExpiresAt: rec.ExpiresAt,
		CreatedBy: rec.CreatedBy, EnrollAddress: a.opts.Enrol.Address, CASHA256: tok.PinHex(),
	})
}

// tokens serves GET /api/v1/pki/tokens: every join token, newest first, used and
// expired ones included, without secrets.
func (a *API) tokens(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		badRequest(w, err)
		return
	}
	list, err := a.opts.Store.JoinTokens(r.Context())
	if err != nil {
		a.storeError(w, "listing join tokens", err)
		return
	}
	now := time.Now()
	out := make([]TokenInfo, len(list))
	for i, t := range list {
		out[i] = TokenInfo{JoinToken: t, State: t.State(now)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out, "enrolment_enabled": a.opts.Enrol != nil})
}
