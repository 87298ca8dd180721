//go:build linux

// Command fleetgen is a fleet of simulated ebpfnet sidecars for make
// bench's gateway section (internal/bench/gateway.go), run as a process of
// its own so that its CPU is not the gateway's.
//
// Each agent is what the sidecar runs, minus eBPF: an OTel Go SDK
// MeterProvider with its own resource (service.name, service.instance.id,
// host.name, as the sidecar's), ebpfnet's own callback
// (metrics.Register) fed by a synthetic snapshot of n interfaces that
// count every class both ways and have kernel error and drop counters,
// the sidecar's start-time wrapper, and a PeriodicReader exporting through
// otlpmetricgrpc in requests of at most 2048 points, as the sidecar splits
// them. Agents start spread evenly over the interval, as a real fleet's
// do, and export once at start so that the load is steady one interval
// after a grow.
//
// Commands on stdin, one a line: "grow N" starts agents until there are N
// and answers "ok" when the last one has exported once; "stats" answers
// one line of JSON (stats below). At end of input it exits, without the
// final export a sidecar makes when it stops.
//
// With -sink, it also serves a cheap OTLP/HTTP endpoint that discards what
// it receives (the gateway's backend), counting requests and bytes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/version"
)

// stats are the fleet's totals since start.
type stats struct {
	Agents       int   `json:"agents"`
	Exports      int64 `json:"exports"`       // collections exported (each in one or more requests)
	Points       int64 `json:"points"`        // points of those collections, offered to the gateway
	Failed       int64 `json:"failed"`        // collections whose export failed
	FailedPoints int64 `json:"failed_points"` // their points
	SinkRequests int64 `json:"sink_requests"` // requests the OTLP/HTTP sink got
	SinkBytes    int64 `json:"sink_bytes"`
}

var (
	exports, points, failed, failedPoints atomic.Int64
	sinkRequests, sinkBytes               atomic.Int64
	errOnce                               sync.Once
)

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:4317", "the gateway's OTLP/gRPC endpoint")
	interfaces := flag.Int("interfaces", 100, "interfaces per agent")
	interval := flag.Duration("interval", 10*time.Second, "export interval")
	split := flag.String("split", "all", `split_by: "all" (network.type and network.transport) or "none" ([])`)
	sink := flag.String("sink", "", "serve an OTLP/HTTP sink on this address")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("fleetgen: ")

	cfg := config.Default()
	if *split == "none" {
		cfg.SplitBy = []string{}
	}
	sel := metrics.NewSelection(cfg)
	// Failed exports are counted; log the first error only.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		errOnce.Do(func() { log.Printf("first SDK error: %v", err) })
	}))

	if *sink != "" {
		ln, err := net.Listen("tcp", *sink)
		if err != nil {
			log.Fatal(err)
		}
		go func() { _ = http.Serve(ln, http.HandlerFunc(serveSink)) }()
	}

	f := &fleet{endpoint: *endpoint, interfaces: *interfaces, interval: *interval, sel: sel, maxIfaces: cfg.MaxInterfaces, epoch: time.Now()}
	out := bufio.NewWriter(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		switch {
		case len(cmd) == 2 && cmd[0] == "grow":
			n, err := strconv.Atoi(cmd[1])
			if err != nil {
				log.Fatal(err)
			}
			f.grow(n)
			fmt.Fprintln(out, "ok")
		case len(cmd) == 1 && cmd[0] == "stats":
			b, _ := json.Marshal(stats{Agents: len(f.agents), Exports: exports.Load(), Points: points.Load(),
				Failed: failed.Load(), FailedPoints: failedPoints.Load(), SinkRequests: sinkRequests.Load(), SinkBytes: sinkBytes.Load()})
			fmt.Fprintln(out, string(b))
		default:
			log.Fatalf("unknown command %q", in.Text())
		}
		out.Flush()
	}
}

// serveSink takes an OTLP/HTTP export and discards it: an empty
// ExportMetricsServiceResponse is an empty protobuf message.
func serveSink(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	sinkRequests.Add(1)
	sinkBytes.Add(n)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

type fleet struct {
	endpoint   string
	interfaces int
	interval   time.Duration
	sel        metrics.Selection
	maxIfaces  int
	epoch      time.Time
	agents     []*sdkmetric.MeterProvider
}

// phase is agent k's offset in the interval: k times the golden ratio,
// modulo 1, so that any number of agents is spread about evenly.
func (f *fleet) phase(k int) time.Duration {
	_, frac := math.Modf(float64(k) * 0.6180339887498949)
	return time.Duration(frac * float64(f.interval))
}

// grow starts agents until there are n, each at its phase, and returns
// when every new agent has exported once.
func (f *fleet) grow(n int) {
	type start struct {
		k  int
		at time.Time
	}
	var starts []start
	now := time.Now()
	for k := len(f.agents); k < n; k++ {
		// The first time at or after now whose offset from epoch is the phase.
		at := f.epoch.Add(f.phase(k))
		if at.Before(now) {
			at = at.Add(now.Sub(at).Truncate(f.interval))
			if at.Before(now) {
				at = at.Add(f.interval)
			}
		}
		starts = append(starts, start{k, at})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, s := range starts {
		wg.Go(func() {
			time.Sleep(time.Until(s.at))
			p, err := f.agent(s.k)
			if err != nil {
				log.Fatalf("agent %d: %v", s.k, err)
			}
			mu.Lock()
			f.agents = append(f.agents, p)
			mu.Unlock()
			_ = p.ForceFlush(context.Background())
		})
	}
	wg.Wait()
}

// agent starts agent k as the sidecar starts (cmd/ebpfnet serve).
func (f *fleet) agent(k int) (*sdkmetric.MeterProvider, error) {
	ctx := context.Background()
	grpcExp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(f.endpoint), otlpmetricgrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	starts := metrics.NewStartTimes()
	exp := starts.Exporter(counting{metrics.SplitExporter{Exporter: grpcExp, Max: metrics.MaxPointsPerExport}})
	host := fmt.Sprintf("node-%04d", k)
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("ebpfnet"), semconv.HostName(host), semconv.OSTypeLinux,
			semconv.ServiceInstanceID(uuid.NewSHA1(uuid.NameSpaceOID, []byte(host)).String())),
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, err
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithCardinalityLimit(metrics.CardinalityLimit(f.maxIfaces, f.sel)),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(f.interval))))
	meter := provider.Meter(metrics.ScopeName, metric.WithInstrumentationVersion(version.Get()))
	src := newSource(f.interfaces)
	if _, err := metrics.Register(meter, starts.Source(src.snapshot), f.sel, nil); err != nil {
		return nil, err
	}
	return provider, nil
}

// source is a node's counters: n interfaces attached at start, each
// counting every class in both directions, a little more every
// collection, with kernel error and drop counters.
type source struct {
	start time.Time
	ifs   []snapshot.Interface
}

func newSource(n int) *source {
	s := &source{start: time.Now()}
	for i := range n {
		s.ifs = append(s.ifs, snapshot.Interface{Name: fmt.Sprintf("veth%04x", i), Index: i + 2, Start: s.start, Counting: true, KernelOK: true})
	}
	return s
}

func (s *source) snapshot(dst *snapshot.Snapshot) error {
	for i := range s.ifs {
		in := &s.ifs[i]
		for d := range in.Counters {
			for c := range in.Counters[d] {
				in.Counters[d][c].Add(bpf.Count{Packets: uint64(10 + c), Bytes: uint64(1000 + 100*c + i)})
			}
			in.Kernel[d].Errors += uint64(i % 2)
			in.Kernel[d].Dropped += uint64(i % 3)
		}
	}
	dst.Time = time.Now()
	dst.Interfaces = append(dst.Interfaces[:0], s.ifs...)
	if dst.AttachErrors == nil {
		dst.AttachErrors = map[string]uint64{}
		for _, typ := range attach.ErrorTypes {
			dst.AttachErrors[typ] = 0
		}
	}
	return nil
}

// counting counts the collections exported and their points.
type counting struct{ sdkmetric.Exporter }

func (c counting) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	n := int64(0)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			n += int64(metrics.PointsOf(m.Data))
		}
	}
	err := c.Exporter.Export(ctx, rm)
	exports.Add(1)
	points.Add(n)
	if err != nil {
		failed.Add(1)
		failedPoints.Add(n)
	}
	return err
}
