package dashboards_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"go.yaml.in/yaml/v3"

	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/collectortest"
	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/plugin"
)

// p is the plugin, served over gRPC for the whole test binary.
var p *collectortest.Plugin

func TestMain(m *testing.M) {
	cleanup, err := collectortest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var stop func() error
	if p, stop, err = collectortest.ServePlugin(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the plugin:", err)
		code = 1
	}
	cleanup()
	os.Exit(code)
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int               `json:"id"`
	Title      string            `json:"title"`
	Type       string            `json:"type"`
	Datasource *dsRef            `json:"datasource"`
	Targets    []json.RawMessage `json:"targets"`
	Panels     []panel           `json:"panels"` // of a collapsed row
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource *dsRef          `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string          `json:"name"`
			BuiltIn    int             `json:"builtIn"`
			Datasource *dsRef          `json:"datasource"`
			Target     json.RawMessage `json:"target"`
		} `json:"list"`
	} `json:"annotations"`
}

// query is one target of a dashboard, with where it is.
type query struct {
	where string
	ds    *dsRef
	raw   json.RawMessage
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("json/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in json/: %v", err)
	}
	out := map[string]dashboard{}
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: not valid dashboard JSON: %v", f, err)
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: uid %q, title %q, %d panels: a dashboard needs all three", f, d.UID, d.Title, len(d.Panels))
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %q", f, other, d.UID)
		}
		uids[d.UID] = f
		out[f] = d
	}
	return out
}

// queries lists every target of d: panels (and panels of rows), variables, annotations.
func queries(file string, d dashboard) []query {
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for i, t := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("%s: panel %d %q target %d", file, p.ID, p.Title, i), p.Datasource, t})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			qs = append(qs, query{fmt.Sprintf("%s: variable %s", file, v.Name), v.Datasource, v.Query})
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 {
			qs = append(qs, query{fmt.Sprintf("%s: annotation %q", file, a.Name), a.Datasource, a.Target})
		}
	}
	return qs
}

func TestDashboardsUseTheTripwireDataSource(t *testing.T) {
	for file, d := range loadDashboards(t) {
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "tripwire" || p.Datasource.Type != plugin.ID) {
					t.Errorf("%s: panel %d %q: datasource %+v, want uid tripwire of type %s", file, p.ID, p.Title, p.Datasource, plugin.ID)
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		for _, q := range queries(file, d) {
			var target struct {
				Datasource *dsRef `json:"datasource"`
			}
			if err := json.Unmarshal(q.raw, &target); err != nil {
				t.Errorf("%s: %v", q.where, err)
				continue
			}
			ds := target.Datasource
			if ds == nil {
				ds = q.ds // a variable's query carries no datasource: its variable does
			}
			if ds == nil || ds.UID != "tripwire" {
				t.Errorf("%s: datasource %+v, want uid tripwire", q.where, ds)
			}
			if _, err := plugin.ParseQuery(interpolate(q.raw)); err != nil {
				t.Errorf("%s: does not decode into the plugin's query model: %v", q.where, err)
			}
		}
	}
}

// interpolate does what Grafana's frontend does before a query reaches the backend:
// template variables replaced by their values (host = the test's agent).
func interpolate(raw json.RawMessage) []byte {
	return []byte(strings.NewReplacer("${host}", "web-1", "$host", "web-1").Replace(string(raw)))
}

func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, UID, Access string
			IsDefault               bool              `yaml:"isDefault"`
			Editable                bool              `yaml:"editable"`
			JSONData                map[string]any    `yaml:"jsonData"`
			SecureJSONData          map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, "provisioning/datasources/tripwire.yaml", &ds)
	if len(ds.Datasources) != 1 {
		t.Fatalf("%d data sources provisioned, want 1", len(ds.Datasources))
	}
	d := ds.Datasources[0]
	if d.UID != "tripwire" || d.Type != plugin.ID || d.JSONData["url"] == nil {
		t.Errorf("data source %+v: want uid tripwire, type %s and jsonData.url", d, plugin.ID)
	}
	if tok := d.SecureJSONData["apiToken"]; !strings.HasPrefix(tok, "${") {
		t.Errorf("secureJsonData.apiToken = %q: want it from an environment variable, never the token itself", tok)
	}
	for k := range d.JSONData {
		if strings.Contains(strings.ToLower(k), "token") {
			t.Errorf("jsonData.%s: secrets belong in secureJsonData", k)
		}
	}
	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type    string
			FolderUID             string `yaml:"folderUid"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string
				FoldersFromFilesStructure bool `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "provisioning/dashboards/tripwire.yaml", &dash)
	if len(dash.Providers) != 1 || dash.Providers[0].Folder == "" || dash.Providers[0].Type != "file" || dash.Providers[0].Options.Path == "" {
		t.Errorf("dashboard providers %+v: want one file provider with a folder and a path", dash.Providers)
	}
}

func readYAML(t *testing.T, path string, out any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// Every query of every dashboard runs without error against a real collector holding a
// real alert, through the plugin's gRPC protocol, over the last 24 hours.
func TestDashboardQueriesRun(t *testing.T) {
	collectortest.RequireRoot(t)
	env := collectortest.Start(t)
	env.WaitAlert(env.Trip())
	ds := env.Settings(env.Token)
	now := time.Now()
	for file, d := range loadDashboards(t) {
		for _, q := range queries(file, d) {
			dr := p.Query(t, ds, backend.DataQuery{
				RefID:         "A",
				JSON:          interpolate(q.raw),
				TimeRange:     backend.TimeRange{From: now.Add(-24 * time.Hour), To: now},
				Interval:      time.Minute,
				MaxDataPoints: 1440,
			})
			if dr.Error != nil {
				t.Errorf("%s: %v", q.where, dr.Error)
			}
		}
	}
}
