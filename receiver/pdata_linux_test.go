package receiver

import (
	"flag"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// A controlled snapshot against testdata/scraper/expected.yaml: names,
// units, descriptions, attributes, start timestamps, values.
func TestScrapeGolden(t *testing.T) {
	start0 := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	var a, b bpf.Counters
	a[bpf.Receive][bpf.ClassIPv4TCP] = bpf.Count{Packets: 10, Bytes: 15000}
	a[bpf.Receive][bpf.ClassIPv6UDP] = bpf.Count{Packets: 3, Bytes: 450}
	a[bpf.Transmit][bpf.ClassIPv4TCP] = bpf.Count{Packets: 7, Bytes: 462}
	a[bpf.Transmit][bpf.ClassIPv4Unknown] = bpf.Count{Packets: 1, Bytes: 20}
	b[bpf.Receive][bpf.ClassNonIP] = bpf.Count{Packets: 2, Bytes: 84}
	b[bpf.Transmit][bpf.ClassIPv6ICMP] = bpf.Count{Packets: 4, Bytes: 360}
	s := snapshot.Snapshot{
		Interfaces: []snapshot.Interface{
			{Name: "veth0", Index: 5, Start: start0, Counters: a, KernelOK: true, Counting: true,
				Kernel: [bpf.NumDirections]snapshot.KernelStats{{Errors: 1, Dropped: 2}, {Errors: 0, Dropped: 3}}},
			{Name: "veth1", Index: 6, Start: start0.Add(time.Minute), Counters: b, KernelOK: true, Counting: true},
			// Attached, but a hook is missing: not counted as attached.
			{Name: "veth2", Index: 7, Start: start0.Add(2 * time.Minute)},
		},
		AttachErrors:  map[string]uint64{"max_interfaces": 4, "attach": 0, "file_limit": 0},
		HooksRestored: 2,
	}
	started := start0.Add(-time.Second)
	got := toMetrics(&s, metrics.Everything, started,
		pcommon.NewTimestampFromTime(start0.Add(time.Hour)), 250*time.Microsecond)

	path := filepath.Join("testdata", "scraper", "expected.yaml")
	if *update {
		if err := golden.WriteMetrics(t, path, got); err != nil {
			t.Fatal(err)
		}
	}
	want, err := golden.ReadMetrics(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pmetrictest.CompareMetrics(want, got,
		pmetrictest.IgnoreTimestamp(),
		pmetrictest.IgnoreStartTimestamp(), // checked below: golden files normalize them
		pmetrictest.IgnoreScopeVersion(),
		pmetrictest.IgnoreMetricDataPointsOrder(),
		pmetrictest.IgnoreMetricValues("ebpfnet.collection.duration"),
	); err != nil {
		t.Error(err)
	}
	// Start timestamps are compared here, not in the golden file (whose
	// writer normalises them), for every point of every metric: each
	// interface's counters start when counting began on it, the receiver's
	// own counters when it started; a gauge has no start.
	wantStart := map[string]time.Time{"veth0": start0, "veth1": start0.Add(time.Minute)}
	points := map[string]int{}
	rms := got.ResourceMetrics()
	for r := 0; r < rms.Len(); r++ {
		sms := rms.At(r).ScopeMetrics()
		for k := 0; k < sms.Len(); k++ {
			ms := sms.At(k).Metrics()
			for i := 0; i < ms.Len(); i++ {
				m := ms.At(i)
				var dps pmetric.NumberDataPointSlice
				switch m.Type() {
				case pmetric.MetricTypeSum:
					dps = m.Sum().DataPoints()
				case pmetric.MetricTypeGauge:
					dps = m.Gauge().DataPoints()
				default:
					t.Errorf("%s is a %v", m.Name(), m.Type())
					continue
				}
				for j := 0; j < dps.Len(); j++ {
					dp := dps.At(j)
					want := started
					iface, ok := dp.Attributes().Get("network.interface.name")
					switch {
					case m.Type() == pmetric.MetricTypeGauge:
						want = time.Unix(0, 0)
					case ok:
						if want, ok = wantStart[iface.Str()]; !ok {
							t.Errorf("%s: a point of interface %q, which is not counting", m.Name(), iface.Str())
						}
					}
					if st := dp.StartTimestamp().AsTime(); !st.Equal(want) {
						t.Errorf("%s %v: start %v, want %v", m.Name(), dp.Attributes().AsRaw(), st, want)
					}
					points[m.Name()]++
				}
			}
		}
	}
	wantPoints := map[string]int{
		"system.network.io": 6, "system.network.packet.count": 6,
		"system.network.errors": 4, "system.network.packet.dropped": 4,
		"ebpfnet.interfaces.attached": 1, "ebpfnet.attach.errors": 3, "ebpfnet.hooks.restored": 1,
		"ebpfnet.collection.duration": 1,
	}
	if !maps.Equal(points, wantPoints) {
		t.Errorf("checked the start of the points %v, want %v", points, wantPoints)
	}
}

// A metric with no points is never sent (Prometheus logs every one it
// drops): no traffic yet means no io and packet metrics, not empty ones.
func TestNoEmptyMetric(t *testing.T) {
	s := snapshot.Snapshot{Interfaces: []snapshot.Interface{{Name: "idle0", Index: 3, Counting: true}}}
	md := toMetrics(&s, metrics.Everything, time.Now(), pcommon.NewTimestampFromTime(time.Now()), time.Millisecond)
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	var names []string
	for i := 0; i < ms.Len(); i++ {
		m := ms.At(i)
		names = append(names, m.Name())
		if n := dataPoints(m); n == 0 {
			t.Errorf("%s has no data points", m.Name())
		}
	}
	want := []string{"ebpfnet.interfaces.attached", "ebpfnet.hooks.restored", "ebpfnet.collection.duration"}
	if !slices.Equal(names, want) {
		t.Errorf("metrics %v, want %v", names, want)
	}
}

// A pod's own view goes in a Resource of its own, named by the pod (as the
// semantic conventions and the k8sattributes processor have it); the host
// veth's own series stay in the node's, carrying the pod's identity.
func TestPodResources(t *testing.T) {
	var c bpf.Counters
	c[bpf.Receive][bpf.ClassIPv4TCP] = bpf.Count{Packets: 10, Bytes: 1000}
	pod := &pods.Pod{UID: "3f5e", Name: "cart", Namespace: "shop", Interface: "eth0"}
	s := snapshot.Snapshot{Interfaces: []snapshot.Interface{{Name: "veth1a2b", Index: 7, Counters: c, Counting: true, Pod: pod}}}
	md := toMetrics(&s, metrics.Everything, time.Now(), pcommon.NewTimestampFromTime(time.Now()), time.Millisecond)
	if n := md.ResourceMetrics().Len(); n != 2 {
		t.Fatalf("%d resources, want the node's and the pod's", n)
	}
	res := md.ResourceMetrics().At(1).Resource().Attributes().AsRaw()
	if res["k8s.pod.uid"] != "3f5e" || res["k8s.pod.name"] != "cart" || res["k8s.namespace.name"] != "shop" {
		t.Errorf("pod resource %v", res)
	}
	ms := md.ResourceMetrics().At(1).ScopeMetrics().At(0).Metrics()
	if ms.Len() != 2 || ms.At(0).Name() != "k8s.pod.network.io" || ms.At(1).Name() != "k8s.pod.network.packet.count" {
		t.Fatalf("pod metrics: %d", ms.Len())
	}
	p := ms.At(1).Sum().DataPoints().At(0)
	if d, _ := p.Attributes().Get("network.io.direction"); d.Str() != "transmit" || p.IntValue() != 10 {
		t.Errorf("the pod's view of what its veth received: %v = %d, want transmit = 10", p.Attributes().AsRaw(), p.IntValue())
	}
	if _, ok := p.Attributes().Get("k8s.pod.uid"); ok {
		t.Error("the pod's identity is on the data point too")
	}
	node := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints().At(0).Attributes().AsRaw()
	if node["k8s.pod.name"] != "cart" || node["network.interface.name"] != "veth1a2b" {
		t.Errorf("the veth's own series: %v", node)
	}
}
