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

// The selectors of the $instance and $interface variables.
const (
	inst      = `instance=~"$instance"`
	instIface = `instance=~"$instance", network_interface_name=~"$interface"`
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
		`sum by (instance, network_interface_name, network_io_direction) (rate(system_network_io_bytes_total{` + instIface + `}[$__rate_interval])) * 8`,
		"{{instance}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Packets by interface and direction", "pps", 12, 0, 12, []query{{
		`sum by (instance, network_interface_name, network_io_direction) (rate(system_network_packet_count_total{` + instIface + `}[$__rate_interval]))`,
		"{{instance}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Packets by IP version and transport", "pps", 0, 8, 12, []query{{
		`sum by (network_type, network_transport) (rate(system_network_packet_count_total{` + instIface + `, network_type!=""}[$__rate_interval]))`,
		"{{network_type}} {{network_transport}}"}, {
		`sum(rate(system_network_packet_count_total{` + instIface + `, network_type=""}[$__rate_interval]))`,
		"non-IP"}}},
	{"Top 10 interfaces by throughput", "bps", 12, 8, 12, []query{{
		`topk(10, sum by (instance, network_interface_name) (rate(system_network_io_bytes_total{` + instIface + `}[$__rate_interval])) * 8)`,
		"{{instance}} {{network_interface_name}}"}}},
	{"Errors (kernel)", "short", 0, 16, 12, []query{{
		`sum by (instance, network_interface_name, network_io_direction) (rate(system_network_errors_total{` + instIface + `}[$__rate_interval]))`,
		"{{instance}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Drops (kernel)", "pps", 12, 16, 12, []query{{
		`sum by (instance, network_interface_name, network_io_direction) (rate(system_network_packet_dropped_total{` + instIface + `}[$__rate_interval]))`,
		"{{instance}} {{network_interface_name}} {{network_io_direction}}"}}},
	{"Agent: interfaces attached", "short", 0, 24, 8, []query{{
		`sum by (instance) (ebpfnet_interfaces_attached{` + inst + `})`,
		"{{instance}}"}}},
	{"Agent: attach errors", "short", 8, 24, 8, []query{{
		`sum by (instance, error_type) (increase(ebpfnet_attach_errors_total{` + inst + `}[$__rate_interval]))`,
		"{{instance}} {{error_type}}"}}},
	{"Agent: collection time", "s", 16, 24, 8, []query{{
		`max by (instance) (ebpfnet_collection_duration_seconds{` + inst + `})`,
		"{{instance}}"}}},
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
		Description("Per-interface traffic counted by ebpfnet (eBPF), with the protocol split, the kernel's errors and drops, and the agents' own health.").
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
		WithVariable(labelValues("instance", "Host / agent", "label_values(ebpfnet_interfaces_attached, instance)")).
		WithVariable(labelValues("interface", "Interface", `label_values(system_network_io_bytes_total{instance=~"$instance"}, network_interface_name)`))

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
