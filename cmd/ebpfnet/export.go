package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/table"
)

// newReader builds the metric reader for the chosen exporter. OTLP and
// console exporters are made here, each reading its own OTEL_EXPORTER_OTLP_*
// variables, and wrapped so that every interface's points carry its own
// start time (starts). Prometheus (whose exposition has no start times)
// and none come from autoexport, which reads the OTEL_* variables; two of
// them are set here first so that it follows the sidecar's contract.
func (s *settings) newReader(ctx context.Context, stdout io.Writer, starts *metrics.StartTimes) (sdkmetric.Reader, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch {
	case s.exporter == "table":
		return sdkmetric.NewPeriodicReader(table.New(stdout), sdkmetric.WithInterval(s.interval)), nil
	case s.exporter == "otlp" && s.protocol == "http/protobuf":
		exp, err = otlpmetrichttp.New(ctx)
	case s.exporter == "otlp":
		exp, err = otlpmetricgrpc.New(ctx)
	case s.exporter == "console":
		exp, err = stdoutmetric.New()
	default:
		os.Setenv("OTEL_METRIC_EXPORT_INTERVAL", strconv.FormatInt(s.interval.Milliseconds(), 10))
		os.Setenv("OTEL_METRICS_EXPORTER", s.exporter)
		return autoexport.NewMetricReader(ctx)
	}
	if err != nil {
		return nil, err
	}
	return sdkmetric.NewPeriodicReader(starts.Exporter(exp), sdkmetric.WithInterval(s.interval)), nil
}

// resource: service.name ebpfnet unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise, host.name, os.type.
func (s *settings) resource(ctx context.Context) (*resource.Resource, error) {
	return resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("ebpfnet")),
		resource.WithHost(),
		resource.WithOS(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: the environment wins
	)
}

// outageLogger is the OTel error handler: export failures repeat while a
// Collector is unreachable, at most one per interval or export timeout,
// and are logged once per outage. An outage is over when no error came for
// two of those periods.
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
	log.Info("ebpfnet counting", "interfaces", names, "attach", s.config.Attach,
		"exporter", s.exporter, "interval", s.interval, "pin_path", s.config.PinPath)
}
