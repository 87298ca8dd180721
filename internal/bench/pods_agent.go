//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// agent is a datapath and the sidecar's metrics on it: the callback
// registered on an SDK meter provider with a manual reader, and the same
// callback alone, for timing it without the SDK.
type agent struct {
	d        *datapath.Datapath
	provider *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader
	alone    *metrics.Callback
}

func openAgent(cacheDir string, pods bool) (*agent, error) {
	cfg := config.Default()
	cfg.Interfaces.Include = []string{"veth*"}
	cfg.MaxInterfaces = 512
	cfg.Pods = config.Pods{Enabled: &pods, CNICacheDir: cacheDir}
	d, err := datapath.Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	if d.NamesPods() != pods {
		d.Close()
		return nil, fmt.Errorf("pods.enabled %v, but the datapath names pods: %v", pods, d.NamesPods())
	}
	a := &agent{d: d, reader: sdkmetric.NewManualReader()}
	a.provider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(a.reader),
		sdkmetric.WithCardinalityLimit(metrics.CardinalityLimit(cfg.MaxInterfaces, metrics.Everything)))
	_, err = metrics.Register(a.provider.Meter(metrics.ScopeName), d.Snapshot, metrics.Everything, nil)
	if err == nil {
		a.alone, err = metrics.NewCallback(a.provider.Meter("bench"), d.Snapshot, metrics.Everything)
	}
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// collect runs one SDK collection and says how many traffic, error and
// drop points it made, the interfaces' and the pods' views apart.
func (a *agent) collect() (iface, pod int, err error) {
	var rm metricdata.ResourceMetrics
	if err := a.reader.Collect(context.Background(), &rm); err != nil {
		return 0, 0, err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			switch m.Name {
			case metrics.IO.Name, metrics.Packets.Name, metrics.Errors.Name, metrics.Dropped.Name:
				iface += len(s.DataPoints)
			case metrics.PodIO.Name, metrics.PodPackets.Name, metrics.PodErrors.Name, metrics.PodDropped.Name:
				pod += len(s.DataPoints)
			}
		}
	}
	return iface, pod, nil
}

func (a *agent) close() {
	_ = a.provider.Shutdown(context.Background())
	_ = a.d.Close()
}

// waitFor polls d's snapshots until n interfaces are listed, named of
// them by a pod.
func waitFor(d *datapath.Datapath, n, named int) error {
	deadline := time.Now().Add(2 * time.Minute)
	var s snapshot.Snapshot
	for {
		if err := d.Snapshot(&s); err != nil {
			return err
		}
		got := 0
		for _, in := range s.Interfaces {
			if in.Pod != nil {
				got++
			}
		}
		if len(s.Interfaces) == n && got == named {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d interfaces listed (%d named by pods) after 2 minutes, want %d (%d)", len(s.Interfaces), got, n, named)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// liveHeap is the Go heap's live bytes after a full collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// heaps are a memory measurement: how much an agent opened on n
// interfaces (named of them by pods) grew the live heap, once every one is
// listed (counted), and after one SDK collection with every class on every
// interface (collected).
type heaps struct {
	n, named           int
	counted, collected int64
}

// agentHeap opens an agent (pods on) on the interfaces there are, and
// measures what it added to the live heap: the difference from before it
// was opened, so that what the bench itself did before (CNI plugins run
// by the dozen, threads made) is not the agent's.
func agentHeap(cacheDir string, n, named int, send func() error) (heaps, error) {
	h := heaps{n: n, named: named}
	base := liveHeap()
	a, err := openAgent(cacheDir, true)
	if err != nil {
		return h, err
	}
	defer a.close()
	if err := waitFor(a.d, n, named); err != nil {
		return h, err
	}
	h.counted = liveHeap() - base
	if send != nil {
		if err := send(); err != nil {
			return h, err
		}
	}
	ifacePoints, podPoints, err := a.collect()
	if err != nil {
		return h, err
	}
	if ifacePoints != n*48 || podPoints != named*48 {
		return h, fmt.Errorf("%d interfaces (%d pods): %d interface points and %d pod points, want %d and %d", n, named, ifacePoints, podPoints, n*48, named*48)
	}
	h.collected = liveHeap() - base
	return h, nil
}
