package metrics

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// fixedSnapshot is a controlled snapshot: veth0 with traffic in several
// classes both ways, veth1 with ARP only, received.
func fixedSnapshot() snapshot.Snapshot {
	var a, b bpf.Counters
	a[bpf.Receive][bpf.ClassIPv4TCP] = bpf.Count{Packets: 10, Bytes: 15000}
	a[bpf.Receive][bpf.ClassIPv6UDP] = bpf.Count{Packets: 3, Bytes: 450}
	a[bpf.Transmit][bpf.ClassIPv4TCP] = bpf.Count{Packets: 7, Bytes: 462}
	a[bpf.Transmit][bpf.ClassIPv4Unknown] = bpf.Count{Packets: 1, Bytes: 20}
	b[bpf.Receive][bpf.ClassNonIP] = bpf.Count{Packets: 2, Bytes: 84}
	return snapshot.Snapshot{
		Interfaces: []snapshot.Interface{
			{Name: "veth0", Index: 5, Counters: a, Counting: true},
			{Name: "veth1", Index: 6, Counters: b, Counting: true},
		},
		AttachErrors: map[string]uint64{"max_interfaces": 4},
	}
}

func collect(t testing.TB, src Source) metricdata.ScopeMetrics {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })
	if _, err := Register(provider.Meter(ScopeName), src, Everything, nil); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) != 1 {
		t.Fatalf("%d scopes, want 1", len(rm.ScopeMetrics))
	}
	return rm.ScopeMetrics[0]
}

func point(v int64, kv ...attribute.KeyValue) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(kv...), Value: v}
}

func TestCallbackObservesSnapshot(t *testing.T) {
	snap := fixedSnapshot()
	sm := collect(t, func(s *snapshot.Snapshot) error { *s = snap; return nil })

	iface := AttrInterface.String
	rx, tx := AttrDirection.String("receive"), AttrDirection.String("transmit")
	v4, v6 := AttrNetworkType.String("ipv4"), AttrNetworkType.String("ipv6")
	tcp, udp := AttrTransport.String("tcp"), AttrTransport.String("udp")
	sum := func(points ...metricdata.DataPoint[int64]) metricdata.Sum[int64] {
		return metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: points}
	}
	want := []metricdata.Metrics{
		{Name: "system.network.io", Unit: "By", Description: IO.Description, Data: sum(
			point(15000, iface("veth0"), rx, v4, tcp),
			point(450, iface("veth0"), rx, v6, udp),
			point(462, iface("veth0"), tx, v4, tcp),
			point(20, iface("veth0"), tx, v4),
			point(84, iface("veth1"), rx),
		)},
		{Name: "system.network.packet.count", Unit: "{packet}", Description: Packets.Description, Data: sum(
			point(10, iface("veth0"), rx, v4, tcp),
			point(3, iface("veth0"), rx, v6, udp),
			point(7, iface("veth0"), tx, v4, tcp),
			point(1, iface("veth0"), tx, v4),
			point(2, iface("veth1"), rx),
		)},
		{Name: "ebpfnet.interfaces.attached", Unit: "{interface}", Description: InterfacesAttached.Description,
			Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{point(2)}}},
		{Name: "ebpfnet.attach.errors", Unit: "{error}", Description: AttachErrors.Description,
			Data: sum(point(4, AttrErrorType.String("max_interfaces")))},
	}
	got := map[string]metricdata.Metrics{}
	for _, m := range sm.Metrics {
		got[m.Name] = m
	}
	for _, w := range want {
		metricdatatest.AssertEqual(t, w, got[w.Name], metricdatatest.IgnoreTimestamp())
	}
	d, ok := got["ebpfnet.collection.duration"].Data.(metricdata.Gauge[float64])
	if !ok || len(d.DataPoints) != 1 || d.DataPoints[0].Value <= 0 || d.DataPoints[0].Value > 1 {
		t.Errorf("collection duration: %+v", got["ebpfnet.collection.duration"])
	}
	if sm.Scope.Name != ScopeName {
		t.Errorf("scope %q, want %q", sm.Scope.Name, ScopeName)
	}
}

// An interface that leaves the snapshot leaves the metrics, and the
// Callback's cache of attribute sets (its series, by interface name), so
// that churn does not grow it.
func TestRemovedInterfaceIsForgotten(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	snap := fixedSnapshot()
	meter := provider.Meter(ScopeName)
	// Registered as Register registers it, but with the Callback in hand.
	c, err := NewCallback(meter, func(s *snapshot.Snapshot) error { *s = snap; return nil }, Everything)
	if err != nil {
		t.Fatal(err)
	}
	var observed []metric.Observable
	for _, i := range []metric.Observable{c.io, c.packets, c.netErrors, c.netDropped, c.podIO, c.podPackets, c.podErrors, c.podDropped, c.attached, c.errors, c.restored} {
		if i != nil {
			observed = append(observed, i)
		}
	}
	if _, err := meter.RegisterCallback(c.Observe, observed...); err != nil {
		t.Fatal(err)
	}
	// collect returns the interfaces the collection's points name, and
	// those the Callback keeps attribute sets for.
	collect := func() (reported, cached []string) {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatalf("collect: %v", err)
		}
		if len(rm.ScopeMetrics) != 1 {
			t.Fatalf("%d scopes, want 1", len(rm.ScopeMetrics))
		}
		seen := map[string]bool{}
		for _, m := range rm.ScopeMetrics[0].Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range s.DataPoints {
					if v, ok := p.Attributes.Value(AttrInterface); ok {
						seen[v.AsString()] = true
					}
				}
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(c.series))
	}

	both := []string{"veth0", "veth1"}
	if reported, cached := collect(); !slices.Equal(reported, both) || !slices.Equal(cached, both) {
		t.Fatalf("first collection: points of %v, cache of %v; want %v in both", reported, cached, both)
	}
	snap.Interfaces = snap.Interfaces[:1]
	if reported, cached := collect(); !slices.Equal(reported, both[:1]) || !slices.Equal(cached, both[:1]) {
		t.Errorf("after veth1 left the snapshot: points of %v, cache of %v; want %v in both", reported, cached, both[:1])
	}
}

// The SDK calls the callback once per reader, each reader from its own
// goroutine: an OTLP export, a Prometheus scrape and the console at once.
// Each collection must see one snapshot whole, while interfaces come and
// go between snapshots. (Run with -race, as make test does.)
func TestConcurrentReadersUnderChurn(t *testing.T) {
	readers := []*sdkmetric.ManualReader{sdkmetric.NewManualReader(), sdkmetric.NewManualReader(), sdkmetric.NewManualReader()}
	var opts []sdkmetric.Option
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	provider := sdkmetric.NewMeterProvider(opts...)
	defer provider.Shutdown(context.Background())

	// Snapshot number g has 1+g%7 interfaces, named after g so that churn
	// replaces them, and every count in it is g: a collection that mixed
	// two snapshots shows two values, or a count that is not its size.
	var mu sync.Mutex
	g := 0
	src := func(s *snapshot.Snapshot) error {
		mu.Lock()
		g++
		n := g
		mu.Unlock()
		s.Interfaces = s.Interfaces[:0]
		for i := range 1 + n%7 {
			var c bpf.Counters
			c[bpf.Receive][bpf.ClassIPv4TCP] = bpf.Count{Packets: uint64(n), Bytes: uint64(n)}
			c[bpf.Transmit][bpf.ClassIPv6UDP] = bpf.Count{Packets: uint64(n), Bytes: uint64(n)}
			s.Interfaces = append(s.Interfaces, snapshot.Interface{Name: fmt.Sprintf("v%d-%d", n%13, i), Index: i + 1, Counters: c, KernelOK: true, Counting: true})
		}
		s.AttachErrors = map[string]uint64{"attach": uint64(n)}
		return nil
	}
	if _, err := Register(provider.Meter(ScopeName), src, Everything, nil); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan string, len(readers))
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				var rm metricdata.ResourceMetrics
				if err := r.Collect(context.Background(), &rm); err != nil {
					errs <- err.Error()
					return
				}
				if msg := consistent(rm.ScopeMetrics[0]); msg != "" {
					errs <- msg
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

// consistent says what is wrong with a collection of the snapshots
// TestConcurrentReadersUnderChurn makes, or "".
func consistent(sm metricdata.ScopeMetrics) string {
	values := map[int64]bool{}
	names := map[string]bool{}
	attached := int64(-1)
	for _, m := range sm.Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				if m.Name == IO.Name || m.Name == Packets.Name || m.Name == AttachErrors.Name {
					values[p.Value] = true
				}
				if v, ok := p.Attributes.Value(AttrInterface); ok {
					names[v.AsString()] = true
				}
			}
		case metricdata.Gauge[int64]:
			attached = d.DataPoints[0].Value
		}
	}
	if len(values) != 1 {
		return fmt.Sprintf("one collection shows counts of several snapshots: %v", values)
	}
	for g := range values {
		if want := 1 + g%7; attached != want || int64(len(names)) != want {
			return fmt.Sprintf("snapshot %d has %d interfaces; the collection shows %d attached and %d names", g, want, attached, len(names))
		}
	}
	return ""
}

// A pod's host veth: its own series carry the pod's identity, and the same
// counts are observed in the pod's view, under the k8s.pod.network.*
// names, with the pod's interface name and the directions turned round.
func TestPodView(t *testing.T) {
	var c bpf.Counters
	c[bpf.Receive][bpf.ClassIPv4TCP] = bpf.Count{Packets: 10, Bytes: 1000} // the pod sent
	c[bpf.Transmit][bpf.ClassIPv4UDP] = bpf.Count{Packets: 3, Bytes: 300}  // the pod received
	pod := &pods.Pod{UID: "3f5e", Name: "cart", Namespace: "shop", Interface: "eth0"}
	snap := snapshot.Snapshot{Interfaces: []snapshot.Interface{
		{Name: "veth1a2b", Index: 7, Counters: c, Counting: true, Pod: pod, KernelOK: true,
			Kernel: [bpf.NumDirections]snapshot.KernelStats{{Errors: 1, Dropped: 2}, {Errors: 3, Dropped: 4}}},
	}}
	sm := collect(t, func(s *snapshot.Snapshot) error { *s = snap; return nil })
	got := map[string]metricdata.Metrics{}
	for _, m := range sm.Metrics {
		got[m.Name] = m
	}
	id := []attribute.KeyValue{AttrPodUID.String("3f5e"), AttrPodName.String("cart"), AttrNamespace.String("shop")}
	with := func(kv ...attribute.KeyValue) []attribute.KeyValue { return append(kv, id...) }
	rx, tx := AttrDirection.String("receive"), AttrDirection.String("transmit")
	v4 := AttrNetworkType.String("ipv4")
	sum := func(points ...metricdata.DataPoint[int64]) metricdata.Sum[int64] {
		return metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: points}
	}
	for _, want := range []metricdata.Metrics{
		{Name: "system.network.packet.count", Unit: "{packet}", Description: Packets.Description, Data: sum(
			point(10, with(AttrInterface.String("veth1a2b"), rx, v4, AttrTransport.String("tcp"))...),
			point(3, with(AttrInterface.String("veth1a2b"), tx, v4, AttrTransport.String("udp"))...))},
		{Name: "k8s.pod.network.packet.count", Unit: "{packet}", Description: PodPackets.Description, Data: sum(
			point(10, with(AttrInterface.String("eth0"), tx, v4, AttrTransport.String("tcp"))...),
			point(3, with(AttrInterface.String("eth0"), rx, v4, AttrTransport.String("udp"))...))},
		{Name: "k8s.pod.network.io", Unit: "By", Description: PodIO.Description, Data: sum(
			point(1000, with(AttrInterface.String("eth0"), tx, v4, AttrTransport.String("tcp"))...),
			point(300, with(AttrInterface.String("eth0"), rx, v4, AttrTransport.String("udp"))...))},
		{Name: "k8s.pod.network.errors", Unit: "{error}", Description: PodErrors.Description, Data: sum(
			point(1, with(AttrInterface.String("eth0"), tx)...), point(3, with(AttrInterface.String("eth0"), rx)...))},
		{Name: "k8s.pod.network.packet.dropped", Unit: "{packet}", Description: PodDropped.Description, Data: sum(
			point(2, with(AttrInterface.String("eth0"), tx)...), point(4, with(AttrInterface.String("eth0"), rx)...))},
	} {
		metricdatatest.AssertEqual(t, want, got[want.Name], metricdatatest.IgnoreTimestamp())
	}
}
