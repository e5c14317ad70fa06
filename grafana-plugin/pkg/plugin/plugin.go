// Package plugin is the backend of the Tripwire Grafana data source: it answers
// Grafana's queries (alerts, alert counts, hosts, audit entries, SQL), health checks,
// the editors' resource calls and live alert streams, all from the collector's REST API.
// One Datasource exists per configured data source; it owns the HTTP client.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// ID is the plugin id in plugin.json.
const ID = "tripwire-tripwire-datasource"

// Datasource is one configured Tripwire data source. It is safe for concurrent use.
type Datasource struct {
	settings Settings
	// settingsErr, when set, is why the settings cannot work; every call reports it.
	settingsErr error
	api         *collector
	uid         string
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ backend.StreamHandler         = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewDatasource is the instance factory for datasource.Manage. Bad settings do not fail
// it: the health check and every query then say what to fix.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	st, err := LoadSettings(s)
	d := &Datasource{settings: st, settingsErr: err, uid: s.UID}
	if err != nil {
		backend.Logger.Warn("data source settings are invalid", "uid", s.UID, "err", err)
		return d, nil
	}
	d.api = &collector{base: st.baseURL(), token: st.APIToken, http: st.httpClient()}
	return d, nil
}

// Dispose closes idle connections when Grafana replaces the instance (new settings).
func (d *Datasource) Dispose() {
	if d.api != nil {
		d.api.http.CloseIdleConnections()
	}
}

// QueryData runs each query; a query that fails gets its own error response, naming the
// field when the query itself is wrong.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, dq := range req.Queries {
		resp.Responses[dq.RefID] = d.query(ctx, req.PluginContext, dq)
	}
	return resp, nil
}

func (d *Datasource) query(ctx context.Context, pctx backend.PluginContext, dq backend.DataQuery) backend.DataResponse {
	if d.settingsErr != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, d.settingsErr.Error())
	}
	q, err := ParseQuery(dq.JSON)
	if err != nil {
		return errorResponse(err)
	}
	var dr backend.DataResponse
	switch q.QueryType {
	case QueryAlerts:
		dr, err = d.queryAlerts(ctx, pctx, q, dq.TimeRange)
	case QueryCounts:
		dr, err = d.queryCounts(ctx, q, dq.TimeRange, dq.Interval)
	case QueryHosts:
		dr, err = d.queryHosts(ctx)
	case QueryAudit:
		dr, err = d.queryAudit(ctx, q, dq.TimeRange)
	case QuerySQL:
		dr, err = d.querySQL(ctx, q, dq.TimeRange, dq.Interval)
	case QueryRules:
		dr, err = d.queryRules(ctx)
	}
	if err != nil {
		backend.Logger.Debug("query failed", "refId", dq.RefID, "queryType", q.QueryType, "err", err)
		er := errorResponse(err)
		er.Frames = dr.Frames
		return er
	}
	for _, f := range dr.Frames {
		f.RefID = dq.RefID
	}
	return dr
}

// errorResponse classifies err: the query or the settings (400, the user's to fix), the
// collector's answer (its status) or reaching it (502).
func errorResponse(err error) backend.DataResponse {
	var (
		qe *QueryError
		ae *APIError
		ce *ConnError
	)
	switch {
	case errors.As(err, &qe):
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, err.Error())
	case errors.As(err, &ae):
		return backend.ErrDataResponseWithSource(backend.Status(ae.Status), backend.ErrorSourceDownstream, err.Error())
	case errors.As(err, &ce):
		return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return backend.ErrDataResponseWithSource(backend.StatusTimeout, backend.ErrorSourceDownstream, "the collector did not answer in time: "+err.Error())
	}
	return backend.ErrDataResponseWithSource(backend.StatusInternal, backend.ErrorSourcePlugin, err.Error())
}

// CheckHealth asks the collector for its hosts with the token, and says what is wrong:
// the settings, reaching the collector, TLS, or the token.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	if d.settingsErr != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: d.settingsErr.Error()}, nil
	}
	hosts, err := d.fetchHosts(ctx)
	if err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: healthMessage(d.settings.URL, err)}, nil
	}
	return &backend.CheckHealthResult{
		Status:  backend.HealthStatusOk,
		Message: fmt.Sprintf("Connected to the Tripwire collector at %s: %d hosts enrolled.", d.settings.URL, len(hosts)),
	}, nil
}

func healthMessage(url string, err error) string {
	var (
		ae *APIError
		ce *ConnError
	)
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return "The collector refused the API token (401 Unauthorized): set secureJsonData.apiToken to one of the collector's api.tokens."
	case errors.As(err, &ce) && ce.TLS:
		return "TLS with the collector failed: " + ce.Err.Error() + ". Check tlsAuthWithCACert/tlsCACert, or the URL's scheme."
	case errors.As(err, &ce) && isConnRefused(err):
		return fmt.Sprintf("The collector is unreachable at %s (is it running, and is the URL its listen.http?): %v", url, ce.Err)
	}
	return err.Error()
}

// CallResource serves GET hosts and GET rules: [{"text": name, "value": name}, ...] for
// the query editors and template variables.
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	if req.Method != http.MethodGet {
		return sendJSON(sender, http.StatusMethodNotAllowed, map[string]string{"error": req.Method + " " + req.Path + ": only GET is served"})
	}
	if d.settingsErr != nil {
		return sendJSON(sender, http.StatusBadRequest, map[string]string{"error": d.settingsErr.Error()})
	}
	var (
		names []string
		err   error
	)
	switch req.Path {
	case "hosts":
		var hosts []apiHost
		if hosts, err = d.fetchHosts(ctx); err == nil {
			sortHosts(hosts)
			for _, h := range hosts {
				names = append(names, h.Hostname)
			}
		}
	case "rules":
		names, err = d.ruleNames(ctx)
	default:
		return sendJSON(sender, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no resource %q (have hosts, rules)", req.Path)})
	}
	if err != nil {
		return sendJSON(sender, http.StatusBadGateway, map[string]string{"error": err.Error()})
	}
	type option struct {
		Text  string `json:"text"`
		Value string `json:"value"`
	}
	opts := make([]option, 0, len(names))
	for _, n := range names {
		opts = append(opts, option{n, n})
	}
	return sendJSON(sender, http.StatusOK, opts)
}

func sendJSON(sender backend.CallResourceResponseSender, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sender.Send(&backend.CallResourceResponse{
		Status:  status,
		Headers: map[string][]string{"Content-Type": {"application/json"}},
		Body:    b,
	})
}

// frameOf returns a one-row alerts frame for the stream.
func frameOf(a apiAlert) *data.Frame {
	f := newAlertsFrame("alerts")
	appendAlert(f, a)
	return f
}
