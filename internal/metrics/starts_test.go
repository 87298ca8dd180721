package metrics

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

type captureExporter struct {
	sdkmetric.Exporter
	got *metricdata.ResourceMetrics
}

func (c *captureExporter) Export(_ context.Context, rm *metricdata.ResourceMetrics) error {
	c.got = rm
	return nil
}

// Cumulative points of the interface counters get their interface's start;
// delta points, other metrics and other scopes keep theirs.
func TestStartTimes(t *testing.T) {
	pipeline := time.Unix(1000, 0)
	vt0, vt1 := time.Unix(500, 0), time.Unix(1500, 0)
	starts := NewStartTimes()
	src := starts.Source(func(s *snapshot.Snapshot) error {
		s.Interfaces = []snapshot.Interface{{Name: "vt0", Start: vt0}, {Name: "vt1", Start: vt1}}
		return nil
	})
	if err := src(&snapshot.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	point := func(iface string) metricdata.DataPoint[int64] {
		return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(AttrInterface.String(iface)), StartTime: pipeline}
	}
	sum := func(temporality metricdata.Temporality) metricdata.Sum[int64] {
		return metricdata.Sum[int64]{Temporality: temporality, IsMonotonic: true,
			DataPoints: []metricdata.DataPoint[int64]{point("vt0"), point("vt1"), point("gone")}}
	}
	rm := &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{
		{Scope: instrumentation.Scope{Name: ScopeName}, Metrics: []metricdata.Metrics{
			{Name: Packets.Name, Data: sum(metricdata.CumulativeTemporality)},
			{Name: IO.Name, Data: sum(metricdata.DeltaTemporality)},
			{Name: AttachErrors.Name, Data: sum(metricdata.CumulativeTemporality)},
		}},
		{Scope: instrumentation.Scope{Name: "other"}, Metrics: []metricdata.Metrics{
			{Name: Packets.Name, Data: sum(metricdata.CumulativeTemporality)},
		}},
	}}
	capture := &captureExporter{}
	if err := starts.Exporter(capture).Export(context.Background(), rm); err != nil {
		t.Fatal(err)
	}
	want := [][]time.Time{{vt0, vt1, pipeline}, {pipeline, pipeline, pipeline}, {pipeline, pipeline, pipeline}}
	for m, w := range want {
		points := capture.got.ScopeMetrics[0].Metrics[m].Data.(metricdata.Sum[int64]).DataPoints
		for i := range points {
			if !points[i].StartTime.Equal(w[i]) {
				t.Errorf("%s point %d: start %v, want %v", capture.got.ScopeMetrics[0].Metrics[m].Name, i, points[i].StartTime, w[i])
			}
		}
	}
	if got := capture.got.ScopeMetrics[1].Metrics[0].Data.(metricdata.Sum[int64]).DataPoints[0].StartTime; !got.Equal(pipeline) {
		t.Errorf("another scope's point got start %v", got)
	}
}

// The pod's view starts when counting began on the pod's host veth, found
// by the pod's UID (its interface name, eth0, is every pod's).
func TestPodStartTimes(t *testing.T) {
	pipeline, veth := time.Unix(1000, 0), time.Unix(1500, 0)
	starts := NewStartTimes()
	src := starts.Source(func(s *snapshot.Snapshot) error {
		s.Interfaces = []snapshot.Interface{{Name: "veth1", Start: veth, Pod: &pods.Pod{UID: "u1", Name: "a", Namespace: "n", Interface: "eth0"}}}
		return nil
	})
	if err := src(&snapshot.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	point := func(uid string) metricdata.DataPoint[int64] {
		return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(AttrInterface.String("eth0"), AttrPodUID.String(uid)), StartTime: pipeline}
	}
	rm := &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: ScopeName}, Metrics: []metricdata.Metrics{
		{Name: PodPackets.Name, Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
			DataPoints: []metricdata.DataPoint[int64]{point("u1"), point("gone")}}},
	}}}}
	capture := &captureExporter{}
	if err := starts.Exporter(capture).Export(context.Background(), rm); err != nil {
		t.Fatal(err)
	}
	points := capture.got.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]).DataPoints
	if !points[0].StartTime.Equal(veth) || !points[1].StartTime.Equal(pipeline) {
		t.Errorf("starts %v, %v; want %v, %v", points[0].StartTime, points[1].StartTime, veth, pipeline)
	}
}
