package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/ebpfnet/ebpfnet/internal/metrics"
)

// recorder keeps what each Export call got, as "scope/metric/point" rows,
// and fails the call numbered failAt (from 1).
type recorder struct {
	sdkmetric.Exporter
	calls  [][]string
	failAt int
}

func (r *recorder) Export(_ context.Context, rm *metricdata.ResourceMetrics) error {
	var rows []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
					return fmt.Errorf("%s lost its temporality or monotonicity", m.Name)
				}
				for _, p := range d.DataPoints {
					rows = append(rows, fmt.Sprintf("%s/%s(%s)/%d", sm.Scope.Name, m.Name, m.Unit, p.Value))
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					rows = append(rows, fmt.Sprintf("%s/%s(%s)/%g", sm.Scope.Name, m.Name, m.Unit, p.Value))
				}
			default:
				rows = append(rows, fmt.Sprintf("%s/%s(%s)/whole", sm.Scope.Name, m.Name, m.Unit))
			}
		}
	}
	if rm.Resource != res {
		return errors.New("resource lost")
	}
	r.calls = append(r.calls, rows)
	if len(r.calls) == r.failAt {
		return errors.New("down")
	}
	return nil
}

var res = resource.NewSchemaless(attribute.String("host.name", "h"))

func sum(n, from int) metricdata.Sum[int64] {
	s := metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}
	for i := range n {
		s.DataPoints = append(s.DataPoints, metricdata.DataPoint[int64]{Value: int64(from + i)})
	}
	return s
}

// A collection goes out in requests of at most max points, in order,
// nothing lost or repeated, each metric keeping its name, unit, kind and
// scope; a failed request stops the rest; a small one goes whole.
func TestSplitExporter(t *testing.T) {
	rm := &metricdata.ResourceMetrics{Resource: res, ScopeMetrics: []metricdata.ScopeMetrics{
		{Scope: instrumentation.Scope{Name: "a"}, Metrics: []metricdata.Metrics{
			{Name: "io", Unit: "By", Data: sum(25, 0)},
			{Name: "packets", Unit: "{packet}", Data: sum(7, 100)},
			{Name: "hist", Data: metricdata.Histogram[int64]{}},
		}},
		{Scope: instrumentation.Scope{Name: "b"}, Metrics: []metricdata.Metrics{
			{Name: "duration", Unit: "s", Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{{Value: 0.5}}}},
			{Name: "empty", Data: sum(0, 0)},
		}},
	}}
	whole := &recorder{}
	if err := whole.Export(context.Background(), rm); err != nil {
		t.Fatal(err)
	}
	want := whole.calls[0]
	if len(want) != 34 {
		t.Fatalf("%d rows", len(want))
	}

	r := &recorder{}
	if err := (metrics.SplitExporter{Exporter: r, Max: 10}).Export(context.Background(), rm); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, c := range r.calls {
		if len(c) > 10 {
			t.Errorf("request %d: %d points", i, len(c))
		}
		got = append(got, c...)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(r.calls) != 4 {
		t.Errorf("%d requests:\n%v\nwant\n%v", len(r.calls), got, want)
	}

	r = &recorder{failAt: 2}
	if err := (metrics.SplitExporter{Exporter: r, Max: 10}).Export(context.Background(), rm); err == nil || len(r.calls) != 2 {
		t.Errorf("a failed request: %v after %d requests; want its error, and no more requests", err, len(r.calls))
	}

	r = &recorder{}
	if err := (metrics.SplitExporter{Exporter: r, Max: 34}).Export(context.Background(), rm); err != nil || len(r.calls) != 1 {
		t.Errorf("34 points under a limit of 34: %v, %d requests", err, len(r.calls))
	}
}
