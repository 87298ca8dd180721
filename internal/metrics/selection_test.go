package metrics

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// everyClass is a snapshot with every class counted both ways on a pod's
// veth, each class its own count, so that a wrong merge shows in a sum.
func everyClass() snapshot.Snapshot {
	var c bpf.Counters
	for d := range bpf.NumDirections {
		for k := range int(bpf.NumClasses) {
			c[d][k] = bpf.Count{Packets: uint64(1 + k + 100*d), Bytes: uint64(1000*(1+k) + 7*d)}
		}
	}
	pod := &pods.Pod{UID: "u1", Name: "web", Namespace: "shop", Interface: "eth0"}
	return snapshot.Snapshot{
		Interfaces: []snapshot.Interface{{Name: "veth9", Index: 9, Counters: c, Counting: true, Pod: pod,
			Kernel: [bpf.NumDirections]snapshot.KernelStats{{Errors: 1, Dropped: 2}, {Errors: 3, Dropped: 4}}, KernelOK: true}},
		AttachErrors: map[string]uint64{"max_interfaces": 1},
	}
}

func collectWith(t *testing.T, snap snapshot.Snapshot, sel Selection) map[string][]metricdata.DataPoint[int64] {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	if _, err := Register(provider.Meter(ScopeName), func(s *snapshot.Snapshot) error { *s = snap; return nil }, sel, nil); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string][]metricdata.DataPoint[int64]{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				got[m.Name] = d.DataPoints
			case metricdata.Gauge[int64]:
				got[m.Name] = d.DataPoints
			case metricdata.Gauge[float64]:
				got[m.Name] = nil
			}
		}
	}
	return got
}

// Every split_by choice: one point per bucket and direction, only the kept
// attributes on it, and each bucket's value the sum of its classes, in the
// interface's view and the pod's.
func TestSplitByKeepsSumsExact(t *testing.T) {
	snap := everyClass()
	counters := snap.Interfaces[0].Counters
	for _, by := range [][]string{{}, {config.SplitNetworkType}, {config.SplitTransport}, {config.SplitNetworkType, config.SplitTransport}, {config.SplitTransport, config.SplitNetworkType}} {
		t.Run(fmt.Sprint(by), func(t *testing.T) {
			cfg := config.Default()
			cfg.SplitBy = by
			got := collectWith(t, snap, NewSelection(cfg))

			// The expected buckets, computed from the classes directly.
			type key struct {
				d        bpf.Direction
				typ, trp string
			}
			want := map[key]bpf.Count{}
			for d := range bpf.NumDirections {
				for k := range bpf.NumClasses {
					kk := key{d: bpf.Direction(d)}
					if slices.Contains(by, config.SplitNetworkType) {
						kk.typ = k.NetworkType()
					}
					if slices.Contains(by, config.SplitTransport) {
						kk.trp = k.Transport()
					}
					n := want[kk]
					n.Add(counters[d][k])
					want[kk] = n
				}
			}
			for _, view := range []struct {
				packets, bytes string
				iface          string
				flip           bool
			}{{Packets.Name, IO.Name, "veth9", false}, {PodPackets.Name, PodIO.Name, "eth0", true}} {
				for _, m := range []string{view.packets, view.bytes} {
					if len(got[m]) != len(want) {
						t.Errorf("%s: %d points, want %d", m, len(got[m]), len(want))
					}
					for _, p := range got[m] {
						dir, _ := p.Attributes.Value(AttrDirection)
						typ, _ := p.Attributes.Value(AttrNetworkType)
						trp, _ := p.Attributes.Value(AttrTransport)
						if ifc, _ := p.Attributes.Value(AttrInterface); ifc.AsString() != view.iface {
							t.Errorf("%s: interface %q, want %q", m, ifc.AsString(), view.iface)
						}
						d := bpf.Receive
						if dir.AsString() == bpf.Transmit.String() {
							d = bpf.Transmit
						}
						if view.flip {
							d = PodDirection(d)
						}
						n, ok := want[key{d, typ.AsString(), trp.AsString()}]
						v := n.Packets
						if m == view.bytes {
							v = n.Bytes
						}
						if !ok || uint64(p.Value) != v {
							t.Errorf("%s{%s}: %d, want %d (bucket known: %v)", m, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value, v, ok)
						}
					}
				}
			}
		})
	}
}

// Switched-off metrics are not made, in the interface's view or the pod's;
// the others are made as before.
func TestMetricSwitches(t *testing.T) {
	cfg := config.Default()
	off := []string{IO.Name, PodErrors.Name, CollectionDuration.Name, InterfacesAttached.Name}
	cfg.Metrics = map[string]config.MetricSettings{Packets.Name: {Enabled: true}}
	for _, name := range off {
		cfg.Metrics[name] = config.MetricSettings{Enabled: false}
	}
	got := collectWith(t, everyClass(), NewSelection(cfg))
	for _, def := range All {
		_, made := got[def.Name]
		if want := !slices.Contains(off, def.Name); made != want {
			t.Errorf("%s made: %v, want %v", def.Name, made, want)
		}
	}
	if n := len(got[Packets.Name]); n != 2*int(bpf.NumClasses) {
		t.Errorf("%s: %d points, want %d", Packets.Name, n, 2*int(bpf.NumClasses))
	}
	if got := CardinalityLimit(10, NewSelection(cfg)); got != 10*2*int(bpf.NumClasses)+1 {
		t.Errorf("cardinality limit %d", got)
	}
	cfg.SplitBy = nil
	if got := CardinalityLimit(10, NewSelection(cfg)); got != 10*2+1 {
		t.Errorf("cardinality limit with split_by [] %d, want 21", got)
	}
}

// The metrics block names exactly the metrics there are.
func TestMetricNamesAreTheDefinitions(t *testing.T) {
	var names []string
	for _, def := range All {
		names = append(names, def.Name)
	}
	if !slices.Equal(names, config.MetricNames) {
		t.Errorf("config.MetricNames %v\nmetrics.All      %v", config.MetricNames, names)
	}
}
