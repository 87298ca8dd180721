//go:build linux

package main

import (
	"net/http"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
)

// scrapeProm reads a Prometheus text endpoint with Prometheus' own parser
// and returns each counter's and gauge's value by otlptest.Key of its
// name and labels (the otel_scope_* labels left out), or nil when the
// endpoint does not answer or does not parse.
func scrapeProm(url string) map[string]float64 {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var kv []string
			for _, l := range m.GetLabel() {
				if !strings.HasPrefix(l.GetName(), "otel_scope_") {
					kv = append(kv, l.GetName()+"="+l.GetValue())
				}
			}
			sort.Strings(kv)
			out[otlptest.Key(name, kv...)] = value(f.GetType(), m)
		}
	}
	return out
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}
