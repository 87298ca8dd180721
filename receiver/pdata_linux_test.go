package receiver

import (
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ebpfnet/ebpfnet/bpf"
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
			{Name: "veth0", Index: 5, Start: start0, Counters: a, KernelOK: true,
				Kernel: [bpf.NumDirections]snapshot.KernelStats{{Errors: 1, Dropped: 2}, {Errors: 0, Dropped: 3}}},
			{Name: "veth1", Index: 6, Start: start0.Add(time.Minute), Counters: b, KernelOK: true},
		},
		AttachErrors: map[string]uint64{"max_interfaces": 4},
	}
	got := toMetrics(&s, start0,
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
	// Start timestamps are compared, not ignored: they say when counting
	// began on each interface.
	dps := got.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints()
	for i := 0; i < dps.Len(); i++ {
		iface, _ := dps.At(i).Attributes().Get("network.interface.name")
		want := start0
		if iface.Str() == "veth1" {
			want = start0.Add(time.Minute)
		}
		if st := dps.At(i).StartTimestamp().AsTime(); !st.Equal(want) {
			t.Errorf("%s start %v, want %v", iface.Str(), st, want)
		}
	}
}
