//go:build linux

package main

import (
	"context"
	"errors"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// collection is one setup's collection cost.
type collection struct {
	ifacePoints, podPoints int
	snap, observe, sdk     testing.BenchmarkResult
}

// collectionRounds is how many times each agent's collection is timed,
// the agents in turn, so that both see the machine's load alike; the best
// round counts (the machine is shared, and load only adds).
const collectionRounds = 5

// collectionCosts times one collection of each agent: the snapshot alone,
// the snapshot and the callback's observations into an observer that keeps
// nothing, and the SDK's whole collection; the best of the rounds.
func collectionCosts(agents []*agent) ([]collection, error) {
	out := make([]collection, len(agents))
	rounds := make([][3][]testing.BenchmarkResult, len(agents))
	for i, a := range agents {
		var err error
		if out[i].ifacePoints, out[i].podPoints, err = a.collect(); err != nil {
			return nil, err
		}
	}
	for range collectionRounds {
		for i, a := range agents {
			var s snapshot.Snapshot
			var rm metricdata.ResourceMetrics
			for k, fn := range []func() error{
				func() error { return a.d.Snapshot(&s) },
				func() error { return a.alone.Observe(context.Background(), discard{}) },
				func() error { return a.reader.Collect(context.Background(), &rm) },
			} {
				r := testing.Benchmark(func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if err := fn(); err != nil {
							b.Fatal(err)
						}
					}
				})
				if r.N == 0 {
					return nil, errors.New("a collection benchmark failed")
				}
				rounds[i][k] = append(rounds[i][k], r)
			}
		}
	}
	best := func(rs []testing.BenchmarkResult) testing.BenchmarkResult {
		return slices.MinFunc(rs, func(x, y testing.BenchmarkResult) int { return int(x.NsPerOp() - y.NsPerOp()) })
	}
	for i := range out {
		out[i].snap, out[i].observe, out[i].sdk = best(rounds[i][0]), best(rounds[i][1]), best(rounds[i][2])
	}
	return out, nil
}
