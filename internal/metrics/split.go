package metrics

import (
	"context"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// MaxPointsPerExport bounds the data points of one OTLP request, so that a
// node with many interfaces never sends more than a gRPC server takes by
// default (4 MiB, the Collector's OTLP receiver included): every class on
// 1000 interfaces is 48,000 points, several times that in one request.
// Small requests also keep the exporter's transient memory small;
// BENCHMARKS.md's footprint has what that saves.
const MaxPointsPerExport = 2048

// SplitExporter exports a collection in requests of at most Max data
// points, in order, one after another, and stops at the first error (the
// next collection sends every cumulative point again).
type SplitExporter struct {
	sdkmetric.Exporter
	Max int
}

func (e SplitExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	total := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			total += PointsOf(m.Data)
		}
	}
	if total <= e.Max {
		return e.Exporter.Export(ctx, rm)
	}
	part := metricdata.ResourceMetrics{Resource: rm.Resource}
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		err := e.Exporter.Export(ctx, &part)
		part.ScopeMetrics, n = nil, 0
		return err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for rest := m.Data; rest != nil; {
				if n == e.Max {
					if err := flush(); err != nil {
						return err
					}
				}
				var head metricdata.Aggregation
				var k int
				head, rest, k = splitPoints(rest, e.Max-n)
				if len(part.ScopeMetrics) == 0 || part.ScopeMetrics[len(part.ScopeMetrics)-1].Scope != sm.Scope {
					part.ScopeMetrics = append(part.ScopeMetrics, metricdata.ScopeMetrics{Scope: sm.Scope})
				}
				last := &part.ScopeMetrics[len(part.ScopeMetrics)-1]
				last.Metrics = append(last.Metrics, metricdata.Metrics{Name: m.Name, Description: m.Description, Unit: m.Unit, Data: head})
				n += k
			}
		}
	}
	return flush()
}

// PointsOf is the number of data points of a, or 1 for a kind that is
// never split.
func PointsOf(a metricdata.Aggregation) int {
	switch a := a.(type) {
	case metricdata.Sum[int64]:
		return len(a.DataPoints)
	case metricdata.Sum[float64]:
		return len(a.DataPoints)
	case metricdata.Gauge[int64]:
		return len(a.DataPoints)
	case metricdata.Gauge[float64]:
		return len(a.DataPoints)
	}
	return 1
}

// splitPoints returns a with at most room data points (at least one), the
// rest or nil, and how many points the first part has.
func splitPoints(a metricdata.Aggregation, room int) (head, rest metricdata.Aggregation, n int) {
	room = max(room, 1)
	switch a := a.(type) {
	case metricdata.Sum[int64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Sum[int64], p []metricdata.DataPoint[int64]) { a.DataPoints = p })
	case metricdata.Sum[float64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Sum[float64], p []metricdata.DataPoint[float64]) { a.DataPoints = p })
	case metricdata.Gauge[int64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Gauge[int64], p []metricdata.DataPoint[int64]) { a.DataPoints = p })
	case metricdata.Gauge[float64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Gauge[float64], p []metricdata.DataPoint[float64]) { a.DataPoints = p })
	}
	return a, nil, 1
}

// splitAt is splitPoints for one kind: copies of a (temporality and
// monotonicity kept) with the first n points and with the rest.
func splitAt[A metricdata.Aggregation, P any](a A, points []P, n int, set func(*A, []P)) (metricdata.Aggregation, metricdata.Aggregation, int) {
	if len(points) <= n {
		return a, nil, len(points)
	}
	head, rest := a, a
	set(&head, points[:n:n])
	set(&rest, points[n:])
	return head, rest, n
}
