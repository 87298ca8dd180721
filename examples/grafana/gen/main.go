// Command gen writes the ebpfnet Grafana dashboard,
// examples/grafana/ebpfnet-dashboard.json, from Go: the Grafana Foundation
// SDK's builders, whose types are Grafana's dashboard schema. Edit the
// dashboard here, then regenerate it:
//
//	go run ./examples/grafana/gen -o examples/grafana/ebpfnet-dashboard.json
//
// Without -o it writes to standard output. The test in
// cmd/ebpfnet/grafana_test.go checks that the committed file is this
// program's output, and decodes it strictly into the SDK's types.
package main

//lint:file-ignore SA1019 Grafana's classic dashboard schema (dashboard, not dashboardv2) is what every Grafana imports; v2 is Grafana 12's alone.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// prom is the data source every query and variable uses: the one picked
// in the $datasource variable.
var prom = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// The selectors of the $host and $interface variables. Hosts are told
// apart, and named in legends, by host_name (the resource's host.name),
// not by instance: that is the agent's service.instance.id (a UUID) over
// OTLP, and VictoriaMetrics has no instance label at all. The sums keep
// instance too, so that agents are never added together where host_name
// is missing (a sidecar scraped directly).
const (
	host      = `host_name=~"$host"`
	hostIface = `host_name=~"$host", network_interface_name=~"$interface"`
	// The pod panels read the pod's view alone (k8s_pod_network_*, the
	// pod's own direction), never beside the node's view of the same
	// veth: no panel counts a pod's traffic twice.
	hostPod = `host_name=~"$host", k8s_namespace_name=~"$namespace", k8s_pod_name=~"$pod"`
)

type query struct{ expr, legend string }

// panel is one time series panel: its title, unit, place and queries.
type panel struct {
	title   string
	unit    string
	x, y, w uint32
	queries []query
}

var panels = []panel{
	{"Throughput by interface and direction", "bps", 0, 0, 12, []query{{
		`sum by (instance, host_name, network_interface_name, network_io_direction) (rate(system_network_io_bytes_total{` + hostIface + `}[$__rate_interval])) * 8`,
		"{{host_name}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Packets by interface and direction", "pps", 12, 0, 12, []query{{
		`sum by (instance, host_name, network_interface_name, network_io_direction) (rate(system_network_packet_count_total{` + hostIface + `}[$__rate_interval]))`,
		"{{host_name}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Packets by IP version and transport", "pps", 0, 8, 12, []query{{
		`sum by (network_type, network_transport) (rate(system_network_packet_count_total{` + hostIface + `, network_type!=""}[$__rate_interval]))`,
		"{{network_type}} {{network_transport}}"}, {
		`sum(rate(system_network_packet_count_total{` + hostIface + `, network_type=""}[$__rate_interval]))`,
		"non-IP"}}},
	{"Top 10 interfaces by throughput", "bps", 12, 8, 12, []query{{
		`topk(10, sum by (instance, host_name, network_interface_name) (rate(system_network_io_bytes_total{` + hostIface + `}[$__rate_interval])) * 8)`,
		"{{host_name}} {{network_interface_name}}"}}},
	{"Errors (kernel)", "short", 0, 16, 12, []query{{
		`sum by (instance, host_name, network_interface_name, network_io_direction) (rate(system_network_errors_total{` + hostIface + `}[$__rate_interval]))`,
		"{{host_name}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Drops (kernel)", "pps", 12, 16, 12, []query{{
		`sum by (instance, host_name, network_interface_name, network_io_direction) (rate(system_network_packet_dropped_total{` + hostIface + `}[$__rate_interval]))`,
		"{{host_name}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Agent: interfaces attached", "short", 0, 24, 8, []query{{
		`sum by (instance, host_name) (ebpfnet_interfaces_attached{` + host + `})`,
		"{{host_name}}"}}},
	{"Agent: attach errors", "short", 8, 24, 8, []query{{
		`sum by (instance, host_name, error_type) (increase(ebpfnet_attach_errors_total{` + host + `}[$__rate_interval]))`,
		"{{host_name}} {{error_type}}"}}},
	{"Agent: collection time", "s", 16, 24, 8, []query{{
		`max by (instance, host_name) (ebpfnet_collection_duration_seconds{` + host + `})`,
		"{{host_name}}"}}},
	{"Pods: throughput by namespace (the pods' view)", "bps", 0, 32, 12, []query{{
		`sum by (k8s_namespace_name, network_io_direction) (rate(k8s_pod_network_io_bytes_total{` + hostPod + `}[$__rate_interval])) * 8`,
		"{{k8s_namespace_name}} {{network_io_direction}}"}}},
	{"Pods: throughput by pod", "bps", 12, 32, 12, []query{{
		`sum by (k8s_namespace_name, k8s_pod_name, network_io_direction) (rate(k8s_pod_network_io_bytes_total{` + hostPod + `}[$__rate_interval])) * 8`,
		"{{k8s_namespace_name}}/{{k8s_pod_name}} {{network_io_direction}}"}}},
	{"Pods: packets by IP version and transport", "pps", 0, 40, 12, []query{{
		`sum by (k8s_namespace_name, k8s_pod_name, network_type, network_transport) (rate(k8s_pod_network_packet_count_total{` + hostPod + `, network_type!=""}[$__rate_interval]))`,
		"{{k8s_namespace_name}}/{{k8s_pod_name}} {{network_type}} {{network_transport}}"}, {
		`sum by (k8s_namespace_name, k8s_pod_name) (rate(k8s_pod_network_packet_count_total{` + hostPod + `, network_type=""}[$__rate_interval]))`,
		"{{k8s_namespace_name}}/{{k8s_pod_name}} non-IP"}}},
	{"Pods: drops and errors (kernel)", "pps", 12, 40, 12, []query{{
		`sum by (k8s_namespace_name, k8s_pod_name, network_io_direction) (rate(k8s_pod_network_packet_dropped_total{` + hostPod + `}[$__rate_interval]))`,
		"{{k8s_namespace_name}}/{{k8s_pod_name}} dropped {{network_io_direction}}"}, {
		`sum by (k8s_namespace_name, k8s_pod_name, network_io_direction) (rate(k8s_pod_network_errors_total{` + hostPod + `}[$__rate_interval]))`,
		"{{k8s_namespace_name}}/{{k8s_pod_name}} errors {{network_io_direction}}"}}},
}

// build makes the dashboard.
func build() (dashboard.Dashboard, error) {
	all := dashboard.VariableOption{
		Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
		Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
	}
	// A multi-value query variable of label values, "All" at first.
	labelValues := func(name, label, query string) *dashboard.QueryVariableBuilder {
		return dashboard.NewQueryVariableBuilder(name).
			Label(label).
			Datasource(prom).
			Query(dashboard.StringOrMap{Map: map[string]any{"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"}}).
			Definition(query).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			IncludeAll(true).
			AllValue(".*").
			Multi(true).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Current(all)
	}

	d := dashboard.NewDashboardBuilder("ebpfnet: network interfaces").
		Uid("ebpfnet-interfaces").
		Description("Per-interface and per-pod traffic counted by ebpfnet (eBPF), with the protocol split, the kernel's errors and drops, and the agents' own health.").
		Tags([]string{"ebpfnet", "network", "opentelemetry"}).
		Timezone("browser").
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Version(1).
		Refresh("30s").
		Time("now-1h", "now").
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus").
			Hide(dashboard.VariableHideDontHide).
			// Grafana's default data source (of type prometheus) until one
			// is picked.
			Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("default")},
				Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("default")},
			})).
		WithVariable(labelValues("host", "Host", "label_values(ebpfnet_interfaces_attached, host_name)")).
		WithVariable(labelValues("interface", "Interface", `label_values(system_network_io_bytes_total{host_name=~"$host"}, network_interface_name)`)).
		WithVariable(labelValues("namespace", "Namespace", `label_values(k8s_pod_network_io_bytes_total{host_name=~"$host"}, k8s_namespace_name)`)).
		WithVariable(labelValues("pod", "Pod", `label_values(k8s_pod_network_io_bytes_total{host_name=~"$host", k8s_namespace_name=~"$namespace"}, k8s_pod_name)`))

	for i, p := range panels {
		ts := timeseries.NewPanelBuilder().
			Id(uint32(i + 1)).
			Title(p.title).
			Datasource(prom).
			GridPos(dashboard.GridPos{X: p.x, Y: p.y, W: p.w, H: 8}).
			Unit(p.unit).
			Legend(common.NewVizLegendOptionsBuilder().
				DisplayMode(common.LegendDisplayModeTable).
				Placement(common.LegendPlacementBottom).
				ShowLegend(true).
				Calcs([]string{})).
			Tooltip(common.NewVizTooltipOptionsBuilder().
				Mode(common.TooltipDisplayModeMulti).
				Sort(common.SortOrderDescending))
		for j, q := range p.queries {
			ts.WithTarget(prometheus.NewDataqueryBuilder().
				RefId(string(rune('A' + j))).
				Datasource(prom).
				Expr(q.expr).
				LegendFormat(q.legend))
		}
		d.WithPanel(ts)
	}
	return d.Build()
}

// render is the dashboard's JSON, as committed: two-space indentation,
// no HTML escaping (the queries keep their < and >), a final newline.
func render() ([]byte, error) {
	d, err := build()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func main() {
	out := flag.String("o", "", "write the dashboard to this file (default: standard output)")
	flag.Parse()
	b, err := render()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if *out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
