//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/table"
)

// newReaders builds a metric reader for each exporter otelEnv chose, from
// the variables it read. The OTLP and console exporters are wrapped so
// that every interface's points carry its own start time (starts) and an
// outage is logged once, and OTLP requests are split; Prometheus (whose
// exposition has no start times) serves a registry of its own.
//
// (contrib's autoexport builds the same readers from the same variables,
// but takes one exporter rather than the list the specification allows,
// defaults OTLP to http/protobuf where the contract says grpc, and returns
// readers whose exporters cannot be wrapped.)
//
// For the terminal table it also returns the table exporter, which serve
// primes for a first table a second after start.
func (s *settings) newReaders(ctx context.Context, stdout io.Writer, starts *metrics.StartTimes, onPanic *panicHook, log *slog.Logger) ([]sdkmetric.Reader, *table.Exporter, error) {
	var (
		readers []sdkmetric.Reader
		tbl     *table.Exporter
	)
	fail := func(err error) ([]sdkmetric.Reader, *table.Exporter, error) {
		for _, r := range readers {
			_ = r.Shutdown(ctx)
		}
		return nil, nil, err
	}
	for _, name := range s.env.exporters {
		var (
			exp sdkmetric.Exporter
			err error
		)
		switch {
		case name == "table":
			tbl = table.New(stdout)
			readers = append(readers, sdkmetric.NewPeriodicReader(guarded{tbl, onPanic}, sdkmetric.WithInterval(s.interval)))
			continue
		case name == "prometheus":
			r, err := newPrometheusReader(s.env.promAddr(), log)
			if err != nil {
				return fail(err)
			}
			readers = append(readers, r)
			continue
		case name == "otlp" && s.env.protocol == "http/protobuf":
			exp, err = otlpmetrichttp.New(ctx)
			exp = metrics.SplitExporter{Exporter: exp, Max: metrics.MaxPointsPerExport}
		case name == "otlp":
			exp, err = otlpmetricgrpc.New(ctx)
			exp = metrics.SplitExporter{Exporter: exp, Max: metrics.MaxPointsPerExport}
		case name == "console":
			exp, err = stdoutmetric.New()
		}
		if err != nil {
			return fail(err)
		}
		exp = guarded{&outageExporter{Exporter: starts.Exporter(exp), log: log}, onPanic}
		readers = append(readers, sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(s.interval)))
	}
	return readers, tbl, nil
}

// guarded is an exporter whose Export, run in a goroutine of the SDK's,
// fires onPanic before a panic goes on.
type guarded struct {
	sdkmetric.Exporter
	onPanic *panicHook
}

func (g guarded) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	defer func() {
		if r := recover(); r != nil {
			g.onPanic.fire()
			panic(r)
		}
	}()
	return g.Exporter.Export(ctx, rm)
}

// prometheusReader is the Prometheus exporter (a reader) with the HTTP
// server that serves it, shut down together.
type prometheusReader struct {
	sdkmetric.Reader
	server *http.Server
}

func (r prometheusReader) Shutdown(ctx context.Context) error {
	return errors.Join(r.Reader.Shutdown(ctx), r.server.Shutdown(ctx))
}

// newPrometheusReader serves /metrics on addr from a registry of its own,
// as the specification's Prometheus exporter does.
func newPrometheusReader(addr string, log *slog.Logger) (sdkmetric.Reader, error) {
	reg := prometheus.NewRegistry()
	// host.name as a label on every series, as Prometheus 3's OTLP receiver
	// promotes it and the gateway's exporter carries it: the dashboard and
	// the alerts name agents by host_name whichever way they are read.
	reader, err := promexporter.New(promexporter.WithRegisterer(reg),
		promexporter.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(semconv.HostNameKey)))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("prometheus endpoint on %s: %w", addr, err), reader.Shutdown(context.Background()))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("prometheus endpoint stopped", "error", err)
		}
	}()
	return prometheusReader{Reader: reader, server: server}, nil
}
