// Package dashboards holds Tripwire's Grafana dashboards (json/) and the provisioning
// files for the data source and the dashboards folder (provisioning/). It has no code:
// its test checks that every dashboard is valid, uses the provisioned data source (uid
// "tripwire") everywhere, and that every query decodes into the plugin's query model and
// runs without error against the real plugin, collector and agent.
package dashboards
