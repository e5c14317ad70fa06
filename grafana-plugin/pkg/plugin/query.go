package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Query types of the query model.
const (
	QueryAlerts = "alerts"
	QueryCounts = "counts"
	QueryHosts  = "hosts"
	QueryAudit  = "audit"
	QuerySQL    = "sql"
	// QueryRules is for template variables only: one "text" field of rule names.
	QueryRules = "rules"
)

// Query is one target of a panel or variable, as the frontend sends it (template
// variables already interpolated). Keys Grafana adds (datasource, intervalMs, ...) are
// ignored.
type Query struct {
	RefID        string `json:"refId"`
	QueryType    string `json:"queryType"`
	Host         string `json:"host,omitempty"`
	TripwireType string `json:"tripwireType,omitempty"`
	Severity     string `json:"severity,omitempty"`
	Rule         string `json:"rule,omitempty"`
	Status       string `json:"status,omitempty"`
	Text         string `json:"text,omitempty"`
	// GroupBy splits counts: type, severity, host or rule (counts only).
	GroupBy string `json:"groupBy,omitempty"`
	// Limit caps rows of alerts and audit queries: 1 to 1000, 0 means 100.
	Limit int `json:"limit,omitempty"`
	// RawSQL is the statement of an sql query, with macros.
	RawSQL string `json:"rawSql,omitempty"`
	// Live makes an alerts frame carry a channel that Grafana streams new alerts into.
	Live bool `json:"live,omitempty"`
}

// QueryError is a query that cannot run as written; Field names the key.
type QueryError struct {
	Field, Msg string
}

func (e *QueryError) Error() string { return fmt.Sprintf("query field %q: %s", e.Field, e.Msg) }

var (
	queryTypes    = []string{QueryAlerts, QueryCounts, QueryHosts, QueryAudit, QuerySQL, QueryRules}
	tripwireTypes = []string{"FILE", "NETWORK", "PROCESS", "HOST"} // HOST: what the collector raises about hosts
	severities    = []string{"INFO", "WARN", "CRITICAL"}
	statuses      = []string{"open", "acknowledged", "resolved"}
	groupBys      = []string{"type", "severity", "host", "rule"}
)

// maxLimit is the collector's largest page.
const maxLimit = 1000

// ParseQuery decodes and checks a query's JSON. Enumerations are case-insensitive and
// come back canonical (FILE, CRITICAL, open).
func ParseQuery(raw []byte) (Query, error) {
	var q Query
	if err := json.Unmarshal(raw, &q); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return q, &QueryError{te.Field, fmt.Sprintf("is a JSON %s, want a %s", te.Value, te.Type)}
		}
		return q, &QueryError{"", "not a JSON object: " + err.Error()}
	}
	return q, q.validate()
}

func (q *Query) validate() error {
	var err error
	if q.QueryType, err = oneOf("queryType", q.QueryType, queryTypes, strings.ToLower, false); err != nil {
		return err
	}
	if q.TripwireType, err = oneOf("tripwireType", q.TripwireType, tripwireTypes, strings.ToUpper, true); err != nil {
		return err
	}
	if q.Severity, err = oneOf("severity", q.Severity, severities, strings.ToUpper, true); err != nil {
		return err
	}
	if q.Status, err = oneOf("status", q.Status, statuses, strings.ToLower, true); err != nil {
		return err
	}
	if q.Limit < 0 || q.Limit > maxLimit {
		return &QueryError{"limit", fmt.Sprintf("%d is not from 1 to %d (0 means 100)", q.Limit, maxLimit)}
	}
	switch q.QueryType {
	case QueryCounts:
		if q.GroupBy, err = oneOf("groupBy", q.GroupBy, groupBys, strings.ToLower, true); err != nil {
			return err
		}
	case QuerySQL:
		if strings.TrimSpace(q.RawSQL) == "" {
			return &QueryError{"rawSql", "is empty"}
		}
	}
	if q.Live && q.QueryType != QueryAlerts {
		return &QueryError{"live", "only an alerts query can be live"}
	}
	return nil
}

// oneOf canonicalises v with canon and checks it is in allowed ("" is allowed if empty).
func oneOf(field, v string, allowed []string, canon func(string) string, empty bool) (string, error) {
	if v == "" && empty {
		return "", nil
	}
	c := canon(v)
	if !slices.Contains(allowed, c) {
		return v, &QueryError{field, fmt.Sprintf("%q is not one of %s", v, strings.Join(allowed, ", "))}
	}
	return c, nil
}
