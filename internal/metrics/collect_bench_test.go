package metrics

import (
	"context"
	"fmt"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// fleet is a snapshot of n interfaces, every class counted both ways, and
// their kernel counters: 48 points an interface with every metric on.
func fleet(n int) snapshot.Snapshot {
	s := snapshot.Snapshot{Interfaces: make([]snapshot.Interface, n)}
	for i := range s.Interfaces {
		in := &s.Interfaces[i]
		in.Name, in.Index, in.Counting, in.KernelOK = fmt.Sprintf("bc%04d", i), i+10, true, true
		for d := range bpf.NumDirections {
			for k := range int(bpf.NumClasses) {
				in.Counters[d][k] = bpf.Count{Packets: uint64(1 + k), Bytes: uint64(100 * (1 + k))}
			}
		}
	}
	return s
}

// BenchmarkSDKCollect is one collection of 1000 interfaces through the
// OTel Go SDK (the callback's observes, the SDK's aggregation and
// metricdata): the SDK's share of the sidecar's CPU. go test -bench
// SDKCollect -cpuprofile shows where it goes.
func BenchmarkSDKCollect(b *testing.B) {
	for _, tc := range []struct {
		name  string
		split []string
		opts  []sdkmetric.Option
	}{
		{"every-class", []string{config.SplitNetworkType, config.SplitTransport}, nil},
		{"split-by-none", []string{}, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			snap := fleet(1000)
			cfg := config.Default()
			cfg.SplitBy = tc.split
			sel := NewSelection(cfg)
			reader := sdkmetric.NewManualReader()
			provider := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{sdkmetric.WithReader(reader),
				sdkmetric.WithCardinalityLimit(CardinalityLimit(1024, sel))}, tc.opts...)...)
			defer provider.Shutdown(context.Background())
			if _, err := Register(provider.Meter(ScopeName), func(s *snapshot.Snapshot) error { *s = snap; return nil }, sel, nil); err != nil {
				b.Fatal(err)
			}
			var rm metricdata.ResourceMetrics
			b.ReportAllocs()
			for b.Loop() {
				if err := reader.Collect(context.Background(), &rm); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
