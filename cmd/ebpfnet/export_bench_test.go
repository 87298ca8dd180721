//go:build linux

package main

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// BenchmarkCollectAndExport is one collection of 1000 interfaces with
// every class (48,000 points) through the sidecar's chain: the SDK's
// Collect, the start times, the split into requests and otlpmetricgrpc to
// a local OTLP receiver. go test -bench CollectAndExport -cpuprofile shows
// where the sidecar's CPU goes; make bench measures the process.
func BenchmarkCollectAndExport(b *testing.B) {
	snap := snapshot.Snapshot{Interfaces: make([]snapshot.Interface, 1000)}
	for i := range snap.Interfaces {
		in := &snap.Interfaces[i]
		in.Name, in.Index, in.Counting, in.KernelOK = fmt.Sprintf("bc%04d", i), i+10, true, true
		for d := range bpf.NumDirections {
			for k := range int(bpf.NumClasses) {
				in.Counters[d][k] = bpf.Count{Packets: uint64(1 + k), Bytes: uint64(100 * (1 + k))}
			}
		}
	}
	srv, err := otlptest.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	ctx := context.Background()
	grpcExp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(srv.Addr), otlpmetricgrpc.WithInsecure())
	if err != nil {
		b.Fatal(err)
	}
	starts := metrics.NewStartTimes()
	exp := starts.Exporter(metrics.SplitExporter{Exporter: grpcExp, Max: metrics.MaxPointsPerExport})
	reader := sdkmetric.NewManualReader()
	sel := metrics.NewSelection(config.Default())
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithCardinalityLimit(metrics.CardinalityLimit(1024, sel)))
	defer provider.Shutdown(ctx)
	if _, err := metrics.Register(provider.Meter(metrics.ScopeName), starts.Source(func(s *snapshot.Snapshot) error { *s = snap; return nil }), sel, nil); err != nil {
		b.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	b.ReportAllocs()
	for b.Loop() {
		if err := reader.Collect(ctx, &rm); err != nil {
			b.Fatal(err)
		}
		if err := exp.Export(ctx, &rm); err != nil {
			b.Fatal(err)
		}
		srv.Forget()
	}
}
