package metrics

import (
	"context"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// StartTimes gives each interface's cumulative points the interface's own
// start time: its first attach (kept across restarts with pinned state),
// and a new one when an interface is created again under the same name.
// The OpenTelemetry Go SDK gives an observable counter one start time, the
// pipeline's, for every series; StartTimes records the start of each
// interface in the snapshot a collection observes, and an exporter wrapped
// by it sets them on that collection's points before they go out.
type StartTimes struct {
	mu    sync.Mutex
	by    map[string]time.Time // by interface name, as of the last snapshot
	byPod map[string]time.Time // the pod's view: by k8s.pod.uid
}

// NewStartTimes returns an empty StartTimes.
func NewStartTimes() *StartTimes {
	return &StartTimes{by: map[string]time.Time{}, byPod: map[string]time.Time{}}
}

// Source returns src, recording the start times of the interfaces in each
// snapshot it takes.
func (s *StartTimes) Source(src Source) Source {
	return func(snap *snapshot.Snapshot) error {
		if err := src(snap); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		clear(s.by)
		clear(s.byPod)
		for i := range snap.Interfaces {
			in := &snap.Interfaces[i]
			s.by[in.Name] = in.Start
			if in.Pod != nil {
				s.byPod[in.Pod.UID] = in.Start
			}
		}
		return nil
	}
}

// Exporter wraps exp so that the cumulative points of the per-interface
// metrics (io, packets, errors, drops) carry their interface's start time.
func (s *StartTimes) Exporter(exp sdkmetric.Exporter) sdkmetric.Exporter {
	return startTimesExporter{Exporter: exp, starts: s}
}

type startTimesExporter struct {
	sdkmetric.Exporter
	starts *StartTimes
}

func (e startTimesExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	e.starts.apply(rm)
	return e.Exporter.Export(ctx, rm)
}

func (s *StartTimes) apply(rm *metricdata.ResourceMetrics) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			by, key := s.by, AttrInterface
			switch m.Name {
			case IO.Name, Packets.Name, Errors.Name, Dropped.Name:
			case PodIO.Name, PodPackets.Name, PodErrors.Name, PodDropped.Name:
				by, key = s.byPod, AttrPodUID
			default:
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || sum.Temporality != metricdata.CumulativeTemporality {
				continue // delta points start at the previous collection
			}
			for i := range sum.DataPoints {
				name, _ := sum.DataPoints[i].Attributes.Value(key)
				if start, ok := by[name.AsString()]; ok {
					sum.DataPoints[i].StartTime = start
				}
			}
		}
	}
}
