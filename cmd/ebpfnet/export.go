package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/table"
)

// newReaders builds a metric reader for each chosen exporter. OTLP and
// console exporters are made here, each reading its own OTEL_EXPORTER_OTLP_*
// variables, and wrapped so that every interface's points carry its own
// start time (starts) and an outage is logged once. Prometheus (whose
// exposition has no start times) comes from autoexport, which reads the
// OTEL_* variables.
//
// For the terminal table it also returns the table exporter, which serve
// primes for a first table a second after start.
func (s *settings) newReaders(ctx context.Context, stdout io.Writer, starts *metrics.StartTimes, log *slog.Logger) ([]sdkmetric.Reader, *table.Exporter, error) {
	var (
		readers []sdkmetric.Reader
		tbl     *table.Exporter
	)
	for _, name := range s.exporters {
		var (
			exp sdkmetric.Exporter
			err error
		)
		switch {
		case name == "table":
			tbl = table.New(stdout)
			readers = append(readers, sdkmetric.NewPeriodicReader(tbl, sdkmetric.WithInterval(s.interval)))
			continue
		case name == "prometheus":
			os.Setenv("OTEL_METRICS_EXPORTER", name)
			r, err := autoexport.NewMetricReader(ctx)
			if err != nil {
				return nil, nil, err
			}
			readers = append(readers, r)
			continue
		case name == "otlp" && s.protocol == "http/protobuf":
			exp, err = otlpmetrichttp.New(ctx)
			exp = splitExporter{Exporter: exp, max: maxPointsPerExport}
		case name == "otlp":
			exp, err = otlpmetricgrpc.New(ctx)
			exp = splitExporter{Exporter: exp, max: maxPointsPerExport}
		case name == "console":
			exp, err = stdoutmetric.New()
		}
		if err != nil {
			return nil, nil, err
		}
		exp = &outageExporter{Exporter: starts.Exporter(exp), log: log}
		readers = append(readers, sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(s.interval)))
	}
	return readers, tbl, nil
}

// resource: service.name ebpfnet unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise, service.instance.id, host.name,
// host.id where the host has one, os.type.
func (s *settings) resource(ctx context.Context) (*resource.Resource, error) {
	// host.id where the host has a machine-id: an image from scratch
	// has none, and that is no reason not to start.
	hostID, err := resource.New(ctx, resource.WithHostID())
	if err != nil {
		hostID = resource.Empty()
	}
	detected, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("ebpfnet")),
		resource.WithAttributes(hostID.Attributes()...),
		resource.WithHost(),
		resource.WithOS(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: the environment wins
	)
	if err != nil {
		return nil, err
	}
	if _, ok := detected.Set().Value(semconv.ServiceInstanceIDKey); ok {
		return detected, nil
	}
	return resource.Merge(detected, resource.NewSchemaless(semconv.ServiceInstanceID(instanceID(detected))))
}

// instanceID is a service.instance.id that stays the same across restarts
// of the same instance and differs between instances: a name-based UUID of
// the host (host.id, else host.name) and the network namespace counted in
// (one per host for a DaemonSet on the host network, one per pod for a
// sidecar). Without it, a gateway's Prometheus exporter merges the series
// of every host into one.
func instanceID(res *resource.Resource) string {
	host, ok := res.Set().Value(semconv.HostIDKey)
	if !ok {
		host, _ = res.Set().Value(semconv.HostNameKey)
	}
	netns, _ := os.Readlink("/proc/self/ns/net")
	return uuid.NewSHA1(instanceNamespace, []byte(host.AsString()+"/"+netns)).String()
}

// instanceNamespace is the UUID namespace of ebpfnet's instance IDs.
var instanceNamespace = uuid.MustParse("0b7c5e9a-3f2d-4c61-9d7e-eb9f00000001")

// maxPointsPerExport bounds the data points of one OTLP request: about 290
// KB, well under the 4 MiB a gRPC server takes by default, the Collector's
// OTLP receiver included. A node with 1000 interfaces that carry every
// class has 48,000 points, 6.7 MB in one request, which such a receiver
// refuses. Small requests also keep the exporter's transient memory small
// (make bench: 1000 interfaces, 5 MB less resident than with 8192 points
// a request, the batch processor's default; 100 interfaces, 3 MB less).
const maxPointsPerExport = 2048

// splitExporter exports a collection in requests of at most max data
// points, in order, one after another, and stops at the first error (the
// next collection sends every cumulative point again).
type splitExporter struct {
	sdkmetric.Exporter
	max int
}

func (e splitExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	total := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			total += pointsOf(m.Data)
		}
	}
	if total <= e.max {
		return e.Exporter.Export(ctx, rm)
	}
	part := metricdata.ResourceMetrics{Resource: rm.Resource}
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		err := e.Exporter.Export(ctx, &part)
		part.ScopeMetrics, n = nil, 0
		return err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for rest := m.Data; rest != nil; {
				if n == e.max {
					if err := flush(); err != nil {
						return err
					}
				}
				var head metricdata.Aggregation
				var k int
				head, rest, k = splitPoints(rest, e.max-n)
				if len(part.ScopeMetrics) == 0 || part.ScopeMetrics[len(part.ScopeMetrics)-1].Scope != sm.Scope {
					part.ScopeMetrics = append(part.ScopeMetrics, metricdata.ScopeMetrics{Scope: sm.Scope})
				}
				last := &part.ScopeMetrics[len(part.ScopeMetrics)-1]
				last.Metrics = append(last.Metrics, metricdata.Metrics{Name: m.Name, Description: m.Description, Unit: m.Unit, Data: head})
				n += k
			}
		}
	}
	return flush()
}

// pointsOf is the number of data points of a, or 1 for a kind that is
// never split.
func pointsOf(a metricdata.Aggregation) int {
	switch a := a.(type) {
	case metricdata.Sum[int64]:
		return len(a.DataPoints)
	case metricdata.Sum[float64]:
		return len(a.DataPoints)
	case metricdata.Gauge[int64]:
		return len(a.DataPoints)
	case metricdata.Gauge[float64]:
		return len(a.DataPoints)
	}
	return 1
}

// splitPoints returns a with at most room data points (at least one), the
// rest or nil, and how many points the first part has.
func splitPoints(a metricdata.Aggregation, room int) (head, rest metricdata.Aggregation, n int) {
	room = max(room, 1)
	switch a := a.(type) {
	case metricdata.Sum[int64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Sum[int64], p []metricdata.DataPoint[int64]) { a.DataPoints = p })
	case metricdata.Sum[float64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Sum[float64], p []metricdata.DataPoint[float64]) { a.DataPoints = p })
	case metricdata.Gauge[int64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Gauge[int64], p []metricdata.DataPoint[int64]) { a.DataPoints = p })
	case metricdata.Gauge[float64]:
		return splitAt(a, a.DataPoints, room, func(a *metricdata.Gauge[float64], p []metricdata.DataPoint[float64]) { a.DataPoints = p })
	}
	return a, nil, 1
}

// splitAt is splitPoints for one kind: copies of a (temporality and
// monotonicity kept) with the first n points and with the rest.
func splitAt[A metricdata.Aggregation, P any](a A, points []P, n int, set func(*A, []P)) (metricdata.Aggregation, metricdata.Aggregation, int) {
	if len(points) <= n {
		return a, nil, len(points)
	}
	head, rest := a, a
	set(&head, points[:n:n])
	set(&rest, points[n:])
	return head, rest, n
}

// outageExporter logs one line when exports start failing and one when
// they recover, whatever the number of attempts in between.
type outageExporter struct {
	sdkmetric.Exporter
	log *slog.Logger

	mu      sync.Mutex
	failing bool
}

// reportedError is an export error outageExporter has logged already, so
// that the OTel error handler, which the reader hands it to as well, does not.
type reportedError struct{ error }

func (e reportedError) Unwrap() error { return e.error }

func (e *outageExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case err != nil && !e.failing:
		e.failing = true
		e.log.Warn("export failing; counting goes on, and this is logged again when exports recover", "error", err)
	case err == nil && e.failing:
		e.failing = false
		e.log.Info("exports recovered")
	}
	if err != nil {
		return reportedError{err}
	}
	return nil
}

// outageLogger is the OTel error handler for everything else (the
// Prometheus exporter, the SDK): errors repeat while something is down, at
// most one per interval or export timeout, and are logged once per outage.
// An outage is over when no error came for two of those periods.
type outageLogger struct {
	log   *slog.Logger
	quiet time.Duration

	mu   sync.Mutex
	last time.Time
}

func newOutageLogger(log *slog.Logger, interval time.Duration) *outageLogger {
	return &outageLogger{log: log, quiet: 2*max(interval, exportTimeout()) + time.Second}
}

// exportTimeout is the OTLP exporter's timeout, from the same variables it
// reads (milliseconds; 10 s by default).
func exportTimeout() time.Duration {
	for _, key := range []string{"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"} {
		if ms, err := strconv.Atoi(os.Getenv(key)); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return 10 * time.Second
}

func (o *outageLogger) Handle(err error) {
	var reported reportedError
	if errors.As(err, &reported) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if o.last.IsZero() || now.Sub(o.last) > o.quiet {
		o.log.Warn("export failing; counting goes on, and this is not logged again until exports recover", "error", err)
	}
	o.last = now
}

func logStart(log *slog.Logger, s *settings, d *datapath.Datapath) {
	var snap snapshot.Snapshot
	_ = d.Snapshot(&snap)
	names := make([]string, 0, len(snap.Interfaces))
	for _, i := range snap.Interfaces {
		names = append(names, i.Name)
	}
	log.Info("ebpfnet counting", "interfaces", names, "attach", d.AttachMode(),
		"exporters", s.exporters, "interval", s.interval, "pin_path", s.config.PinPath, "gogc", s.gogc)
}
