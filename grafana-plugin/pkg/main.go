// Command gpx_tripwire is the backend of the Tripwire Grafana data source: Grafana starts
// it and talks to it over the plugin gRPC protocol.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"

	"github.com/tripwire-project/tripwire/grafana-plugin/pkg/plugin"
)

func main() {
	if err := datasource.Manage(plugin.ID, plugin.NewDatasource, datasource.ManageOpts{}); err != nil {
		backend.Logger.Error("serving the Tripwire data source", "err", err)
		os.Exit(1)
	}
}
