// Package storage defines what the collector needs from a store, whatever the backend:
// the embedded DuckDB file (storage/duckdb) by default, ClickHouse for history and
// PostgreSQL for the index in production. The collector depends only on Store.
package storage

import (
	"context"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
)

// Store holds hosts, their chain entries and the alerts derived from them.
//
// Implementations are safe for concurrent use by many goroutines. A Store never drops an
// entry it has acknowledged: AppendEntries returns nil only once every entry is durable,
// and the collector acks an agent only after that. When a backend is down, its methods
// return errors and the collector stops acking; agents keep entries in their chains and
// resend them, so an outage delays delivery and loses nothing.
type Store interface {
	// RegisterHost records a host's session: created on first sight, updated after.
	RegisterHost(ctx context.Context, h Host) error
	// Head returns the highest seq held contiguously from 1 for the host (0 if none),
	// with its hash.
	Head(ctx context.Context, hostID string) (seq uint64, hash string, err error)
	// EntryHash returns the hash of the entry seq held for the host, or an error
	// wrapping ErrNotFound when none is held. The collector compares it with an agent's
	// to find where the agent's chain departs from the stored one.
	EntryHash(ctx context.Context, hostID string, seq uint64) (string, error)
	// AppendEntries stores entries of one host. It is idempotent on (host_id, seq): an
	// entry already held is left as it is, so a resent batch is stored once. Entries no
	// backend can hold as given are refused with an error wrapping ErrInvalidEntry, and
	// then nothing of the call is stored.
	AppendEntries(ctx context.Context, hostID string, entries []batch.Entry) error
	// TouchHost records that a host was heard from at t.
	TouchHost(ctx context.Context, hostID string, t time.Time) error

	// Alerts returns alerts matching f, newest first.
	Alerts(ctx context.Context, f AlertFilter) ([]Alert, error)
	// Hosts returns every known host, by name.
	Hosts(ctx context.Context) ([]Host, error)
	// Audit returns chain entries matching f, in (host_id, seq) order.
	Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
	// AlertCounts counts the alerts matching f per interval and key, grouped by the
	// backend: buckets in (time, key) order, empty ones left out. More than
	// MaxCountBuckets buckets is an error wrapping ErrTooManyBuckets.
	AlertCounts(ctx context.Context, f CountFilter) ([]CountBucket, error)

	// SetTriage records an analyst's triage of an alert (status one of TriageStatuses,
	// by who, an optional note) and returns the alert as updated. An unknown alert id is
	// an error wrapping ErrNotFound; a bad status one wrapping ErrInvalidTriage.
	SetTriage(ctx context.Context, alertID, status, by, note string) (Alert, error)

	// Query runs one read-only SQL statement over the backend's own tables and streams
	// its result to w: Columns once, then Row per row, at most maxRows rows (truncated
	// reports that more were left). Statements that would write, change settings or
	// touch files are refused by the engine, with an error wrapping ErrQueryRefused.
	// Errors of w end the query and are returned as they are.
	Query(ctx context.Context, query string, maxRows int, w RowWriter) (rows int, truncated bool, err error)

	// PutRules replaces every central rule with rules, in one transaction, and reports
	// what it added, changed and removed. A rule whose type, severity and body are
	// unchanged keeps its UpdatedAt.
	PutRules(ctx context.Context, rules []RuleRecord) (RuleChanges, error)
	// Rules returns the central rules by host then name: every rule for host "", or
	// the global rules and those of the named host.
	Rules(ctx context.Context, host string) ([]RuleRecord, error)

	// MarkOffline sets every ONLINE host last seen before silentSince to OFFLINE and
	// records a HostEvent for each, returning them. The update is conditional: when
	// several collectors run it at once, each host is marked, and its event raised, once.
	MarkOffline(ctx context.Context, silentSince, now time.Time) ([]HostEvent, error)
	// MarkOnline sets an OFFLINE host back to ONLINE and records its return, returning
	// the event; ok is false when the host was not OFFLINE.
	MarkOnline(ctx context.Context, hostID string, now time.Time) (ev HostEvent, ok bool, err error)
	// AddHostEvent records an event the collector raised about a host; added is false
	// when an event with its id was already recorded (ids can be derived, so that a
	// condition raised by several replicas, or again after a restart, is one event).
	AddHostEvent(ctx context.Context, ev HostEvent) (added bool, err error)
	// HostEvents returns the host events from from (inclusive) to to (exclusive; zero
	// means no bound), newest first, at most limit (0: 100, capped at 1000).
	//
	// Every host event is also an alert (HostEvent.Alert): Alerts, AlertCounts and
	// SetTriage see it from the moment MarkOffline, MarkOnline, AddHostEvent or
	// SetHostHealth recorded it, with tripwire type TypeHost and seq 0.
	HostEvents(ctx context.Context, from, to time.Time, limit int) ([]HostEvent, error)
	// SetHostHealth records what the host's agent last said about its watchers: watchers
	// as a JSON array of watcher statuses, degraded as "" when every watcher runs in its
	// best mode, else a description of what is missing. When degraded changes from ""
	// to something it records a HostDegraded event, and when it changes back a
	// HostRestored one, returning it with changed true; otherwise it records nothing.
	// The update is conditional, so of several collectors seeing one change, one records
	// it. An unknown host is an error wrapping ErrNotFound.
	SetHostHealth(ctx context.Context, hostID, watchers, degraded string, now time.Time) (ev HostEvent, changed bool, err error)

	// Revoke records a certificate as revoked; revoking one already revoked keeps the
	// first record.
	Revoke(ctx context.Context, c RevokedCert) error
	// Revoked returns every revoked certificate, by serial.
	Revoked(ctx context.Context) ([]RevokedCert, error)

	// AddJoinToken records a new enrolment token; an id already recorded is an error.
	AddJoinToken(ctx context.Context, t JoinToken) error
	// RedeemJoinToken spends token id, if secretSHA256 is the SHA-256 of its secret and
	// it is neither spent nor expired at now, recording now and from (the address the
	// enrolling host came from), and returns the token as spent. It is one conditional
	// update, so that of concurrent redeems of one token, on any number of collector
	// replicas, exactly one succeeds. A refused redeem changes nothing and returns an
	// error wrapping ErrTokenUnknown, ErrTokenSecret, ErrTokenSpent or ErrTokenExpired,
	// checked in that order.
	RedeemJoinToken(ctx context.Context, id, secretSHA256 string, now time.Time, from string) (JoinToken, error)
	// JoinTokens returns every token, spent and expired ones included (they stay for
	// audit), newest first.
	JoinTokens(ctx context.Context) ([]JoinToken, error)

	// Close releases the store.
	Close() error
}

// Host is an enrolled host as the collector knows it.
type Host struct {
	HostID          string    `json:"host_id"`
	Hostname        string    `json:"hostname"`
	OS              string    `json:"os"`
	Arch            string    `json:"arch"`
	Kernel          string    `json:"kernel"`
	AgentVersion    string    `json:"agent_version"`
	ProtocolVersion uint32    `json:"protocol_version"`
	Watchers        string    `json:"watchers"` // JSON array of watcher statuses as last reported
	FirstSeen       time.Time `json:"first_seen"`
	LastSeen        time.Time `json:"last_seen"`
	HeadSeq         uint64    `json:"head_seq"`
	// CertSerial, CertKey, CertNotBefore and CertNotAfter name the certificate the host
	// last registered with: serial in lowercase hex, and the SHA-256 of its
	// SubjectPublicKeyInfo in lowercase hex. CertKey is "" and CertNotBefore nil for a
	// host last registered by a collector older than the column.
	CertSerial    string     `json:"cert_serial"`
	CertKey       string     `json:"cert_key_sha256"`
	CertNotBefore *time.Time `json:"cert_not_before"`
	CertNotAfter  *time.Time `json:"cert_not_after"`
	// Status is HostOffline once the dead-man switch found the host silent, else
	// HostDegraded while Degraded is set, else HostOnline.
	Status string `json:"status"`
	// Degraded says which watchers run below their best mode, as the agent last
	// reported ("" when none do).
	Degraded string `json:"degraded,omitempty"`
	// ForkOf is set on a fork: the chain (a host id, or another fork's id) this one
	// departs from at ForkSeq, the first seq at which the two differ. A fork is kept
	// under its own id (ForkID), with the host name of the host it is a fork of.
	ForkOf  string `json:"fork_of,omitempty"`
	ForkSeq uint64 `json:"fork_seq,omitempty"`
}

// Host statuses, and the kinds of HostEvent.
const (
	HostOnline  = "ONLINE"
	HostOffline = "OFFLINE"
	// HostDegraded is a status and an event kind: some watcher of the host runs below its
	// best mode (a fallback that sees less, or not at all).
	HostDegraded = "DEGRADED"
	// HostRestored is an event kind only: every watcher of a degraded host runs in its
	// best mode again.
	HostRestored = "RESTORED"
	// HostIntegrity is an event kind only: an agent's chain does not extend the one the
	// collector holds for the host (rewritten, truncated, replaced or forked: ForkEvent,
	// TruncationEvent).
	HostIntegrity = "INTEGRITY"
	// HostCertExpiry is an event kind only: the host's certificate expires within
	// CertExpiryWarning and its renewal is overdue (CertExpiryEvent).
	HostCertExpiry = "CERT_EXPIRY"
	// HostRevokedCert is an event kind only: a revoked certificate of the host was
	// presented to the collector and refused (RevokedCertEvent).
	HostRevokedCert = "REVOKED_CERT"
)

// CertExpiryWarning is how long before a host certificate expires it may raise a WARN
// (CertExpiryEvent).
const CertExpiryWarning = 30 * 24 * time.Hour

// HostEvent is something the collector itself raises about a host: it went silent
// (OFFLINE, CRITICAL), came back (ONLINE, INFO), its chain failed to extend the stored
// one (INTEGRITY, CRITICAL), its certificate nears expiry (CERT_EXPIRY, WARN), a watcher
// fell back to a lesser mode (DEGRADED, WARN) or came back (RESTORED, INFO), a revoked
// certificate of it was presented (REVOKED_CERT, CRITICAL). Each is an alert too
// (Alert), which analysts triage like any other.
type HostEvent struct {
	EventID  string    `json:"event_id"`
	HostID   string    `json:"host_id"`
	Hostname string    `json:"host"`
	Time     time.Time `json:"timestamp"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Message  string    `json:"message"`
}

// RevokedCert is a host certificate the collector refuses: by its serial and, when
// KeySHA256 is set, every certificate that carries its key.
type RevokedCert struct {
	Serial    string    `json:"serial"`               // lowercase hex
	KeySHA256 string    `json:"key_sha256,omitempty"` // of the SubjectPublicKeyInfo, lowercase hex
	HostID    string    `json:"host_id"`
	Hostname  string    `json:"hostname"`
	RevokedAt time.Time `json:"revoked_at"`
	Reason    string    `json:"reason"`
}

// JoinToken is a one-time enrolment token as the store keeps it: the SHA-256 of its
// secret, never the secret. It names the host it enrols and the new host id it gives;
// spent and expired tokens stay, for audit.
type JoinToken struct {
	// ID names the token (16 lowercase hex characters, proto/jointoken).
	ID string `json:"id"`
	// SecretSHA256 is the lowercase hex SHA-256 of the secret's text.
	SecretSHA256 string `json:"-"`
	// Hostname is the host name the certificate will carry; HostID the host id, a new
	// UUID per token.
	Hostname string `json:"hostname"`
	HostID   string `json:"host_id"`
	// CreatedBy is who asked for the token (the API subject).
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt and UsedFrom say when, and from which address, the token was redeemed;
	// UsedAt is nil while it is unused.
	UsedAt   *time.Time `json:"used_at"`
	UsedFrom string     `json:"used_from"`
}

// Join token states, as State reports them.
const (
	TokenUnused  = "unused"
	TokenUsed    = "used"
	TokenExpired = "expired"
)

// State says whether the token was used, has expired unused, or can still be used at now.
func (t JoinToken) State(now time.Time) string {
	switch {
	case t.UsedAt != nil:
		return TokenUsed
	case !now.Before(t.ExpiresAt):
		return TokenExpired
	}
	return TokenUnused
}

// Errors of RedeemJoinToken, one per reason a token is refused. The enrolment service
// logs which; the host is told only that the token was refused.
var (
	ErrTokenUnknown = errors.New("no such join token")
	ErrTokenSecret  = errors.New("join token secret does not match")
	ErrTokenSpent   = errors.New("join token already used")
	ErrTokenExpired = errors.New("join token expired")
)

// TokenRefusal says, for a backend, why RedeemJoinToken refused a token: t is the token
// as stored (found is false when there is none), secretSHA256 and now what the redeem
// was given. It returns one of the ErrToken errors, in the documented order.
func TokenRefusal(t JoinToken, found bool, secretSHA256 string, now time.Time) error {
	switch {
	case !found:
		return ErrTokenUnknown
	case subtle.ConstantTimeCompare([]byte(t.SecretSHA256), []byte(secretSHA256)) != 1:
		return ErrTokenSecret
	case t.UsedAt != nil:
		return ErrTokenSpent
	case !now.Before(t.ExpiresAt):
		return ErrTokenExpired
	}
	// The conditional update and this reading disagree only at the very instant of
	// expiry, where the store's clock resolution rounds now.
	return ErrTokenExpired
}

// Alert is an event entry of a chain, a tripwire that fired, or an event the collector
// raised about a host (tripwire type TypeHost; see HostEvent).
type Alert struct {
	AlertID string `json:"alert_id"`
	Host    string `json:"host"`
	HostID  string `json:"host_id"`
	// Seq is the entry's seq in the host's chain; 0 for an alert the collector raised
	// itself (tripwire type TypeHost), which no chain entry records.
	Seq          uint64    `json:"seq"`
	Timestamp    time.Time `json:"timestamp"`
	TripwireType string    `json:"tripwire_type"`
	RuleName     string    `json:"rule_name"`
	Severity     string    `json:"severity"`
	// EventDetail is the event object of the entry's payload, as JSON.
	EventDetail RawJSON `json:"event_detail"`

	// TriageStatus is one of TriageStatuses: TriageOpen until an analyst changes it.
	TriageStatus string `json:"triage_status"`
	// TriageBy is who last changed the triage status ("" when nobody has).
	TriageBy string `json:"triage_by"`
	// TriageAt is when the triage status last changed (nil when it never has).
	TriageAt *time.Time `json:"triage_at"`
	// TriageNote is the note given with the last change.
	TriageNote string `json:"triage_note"`

	// ForkOf is set when the alert comes from a fork (Host.ForkOf): the chain the
	// alert's chain departs from. Empty for a host's own chain.
	ForkOf string `json:"fork_of,omitempty"`
}

// Triage statuses of an alert.
const (
	TriageOpen         = "open"
	TriageAcknowledged = "acknowledged"
	TriageResolved     = "resolved"
)

// TriageStatuses lists the triage statuses in workflow order.
var TriageStatuses = []string{TriageOpen, TriageAcknowledged, TriageResolved}

// AuditEntry is one chain entry as stored, with its hash links.
type AuditEntry struct {
	Host     string    `json:"host"`
	HostID   string    `json:"host_id"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"timestamp"`
	Kind     string    `json:"kind"`
	PrevHash string    `json:"prev_hash"`
	Hash     string    `json:"hash"`
	// Payload is the exact stored payload text the hash covers.
	Payload string `json:"payload"`
}

// AlertFilter selects alerts. Zero fields do not filter. From is inclusive and To
// exclusive, on the event time. Limit 0 means 100 and is capped at 1000; Offset skips
// that many matches.
type AlertFilter struct {
	Host     string // host name or host id
	Type     string // FILE, NETWORK, PROCESS, or HOST for the collector's host events
	Severity string
	Rule     string // rule name
	Status   string // triage status
	// Text keeps alerts whose event detail, as JSON text, holds it as a substring, in
	// any case (a path, user, command line or IP).
	Text          string
	From, To      time.Time
	Limit, Offset int
}

// CountFilter selects the alerts AlertCounts counts, and how. Alert's Limit and Offset
// are ignored; From and To are required. Buckets start at multiples of Interval since
// the Unix epoch.
type CountFilter struct {
	Alert    AlertFilter
	Interval time.Duration // at least a second, whole seconds
	GroupBy  string        // one of GroupByKeys
}

// Keys AlertCounts groups by: the tripwire type, the severity, the host's name (its id
// when it never registered), or the rule name.
const (
	GroupByType     = "type"
	GroupBySeverity = "severity"
	GroupByHost     = "host"
	GroupByRule     = "rule"
)

// GroupByKeys lists the keys AlertCounts groups by.
var GroupByKeys = []string{GroupByType, GroupBySeverity, GroupByHost, GroupByRule}

// MaxCountBuckets bounds the buckets of one AlertCounts call.
const MaxCountBuckets = 10_000

// CountBucket is the number of alerts of one key in one interval starting at Time.
type CountBucket struct {
	Time  time.Time `json:"time"`
	Key   string    `json:"key"`
	Count uint64    `json:"count"`
}

// Column describes a column of a Query result: its name and the engine's type name.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// RowWriter receives a Query result as it is read. Values passed to Row are those of
// JSONValue (times as RFC 3339 strings); the slice is reused by the next call. It is
// called from one goroutine.
type RowWriter interface {
	Columns(cols []Column) error
	Row(values []any) error
}

// RuleRecord is a rule kept centrally: Host "" applies it to every host. Body is the
// rule in the agent's rule syntax, as a JSON object.
type RuleRecord struct {
	Name      string
	Host      string
	Type      string
	Severity  string
	Body      RawJSON
	UpdatedAt time.Time
}

// RuleKey names a central rule: a name is unique per host scope.
type RuleKey struct {
	Host string `json:"host"`
	Name string `json:"name"`
}

// RuleChanges is what PutRules did.
type RuleChanges struct {
	Added   []RuleKey `json:"added"`
	Changed []RuleKey `json:"changed"`
	Removed []RuleKey `json:"removed"`
}

// AuditFilter selects chain entries. Zero fields do not filter. Host, From, To, Limit
// and Offset mean what they mean in AlertFilter.
type AuditFilter struct {
	Host          string // host name or host id
	From, To      time.Time
	Limit, Offset int
}

// RawJSON is JSON text passed through unchanged.
type RawJSON []byte

// MarshalJSON returns the text itself ("null" when empty).
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps a copy of the text.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// ErrNotFound is returned when a host or alert does not exist.
var ErrNotFound = errors.New("not found")

// ErrInvalidTriage is wrapped by SetTriage errors for a status not in TriageStatuses.
var ErrInvalidTriage = errors.New("invalid triage")

// ErrTooManyBuckets is wrapped by AlertCounts errors when the result would hold more
// than MaxCountBuckets buckets.
var ErrTooManyBuckets = errors.New("too many buckets")

// ErrQueryRefused is wrapped by Query errors for a statement the engine refused to run
// read-only: one that writes, drops, attaches, changes settings or reads or writes
// files. Errors of statements that fail for other reasons (syntax, unknown table) do not
// wrap it.
var ErrQueryRefused = errors.New("query refused")

// ErrFilterTooBroad is wrapped by Alerts and AlertCounts errors when a filter that a
// backend resolves in two steps (the fleet store's Text, or Status in AlertCounts)
// matches more than it narrows in one call: a shorter time range helps.
var ErrFilterTooBroad = errors.New("filter too broad")

// ErrInvalidRule is wrapped by PutRules errors for a rule without a name, type or
// severity, with a body that is not a JSON object, or named twice in one host scope.
var ErrInvalidRule = errors.New("invalid rule")

// ErrInvalidEntry is wrapped by AppendEntries errors for entries that cannot be stored as
// given, whatever the backend: seq 0 or above 2^63-1 (PostgreSQL has no unsigned
// bigint), text that is not valid UTF-8 or holds a NUL byte (PostgreSQL text and
// DuckDB VARCHAR refuse them), or an event time outside the years 1678 to 2261 (times
// are kept as 64-bit nanoseconds). Resending such an entry cannot succeed.
var ErrInvalidEntry = errors.New("invalid entry")

// UTCPtr returns t in UTC, or nil for nil.
func UTCPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
