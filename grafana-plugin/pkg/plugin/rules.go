package plugin

import (
	"context"
	"slices"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

type apiRule struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Severity string `json:"severity"`
	Host     string `json:"host"`
}

// ruleNames returns the distinct rule names the collector knows, sorted.
func (d *Datasource) ruleNames(ctx context.Context) ([]string, error) {
	var body struct {
		Rules []apiRule `json:"rules"`
	}
	if err := d.api.getJSON(ctx, "rules", nil, &body); err != nil {
		return nil, err
	}
	var names []string
	for _, r := range body.Rules {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

func (d *Datasource) queryRules(ctx context.Context) (backend.DataResponse, error) {
	names, err := d.ruleNames(ctx)
	if err != nil {
		return backend.DataResponse{}, err
	}
	if names == nil {
		names = []string{}
	}
	f := data.NewFrame("rules", data.NewField("text", nil, names).SetConfig(&data.FieldConfig{DisplayName: "Rule"}))
	return backend.DataResponse{Frames: data.Frames{f}}, nil
}
