//go:build linux

package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

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
		args := []any{"error", err}
		if hint := protocolHint(err); hint != "" {
			args = append(args, "hint", hint)
		}
		e.log.Warn("export failing; counting goes on, and this is logged again when exports recover", args...)
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

// newOutageLogger logs outages of exports that repeat at most once per
// interval or exportTimeout.
func newOutageLogger(log *slog.Logger, interval, exportTimeout time.Duration) *outageLogger {
	return &outageLogger{log: log, quiet: 2*max(interval, exportTimeout) + time.Second}
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

// protocolHint names a protocol/port mismatch from the error it causes, or
// returns "". gRPC (HTTP/2) to an HTTP/1 server, such as an OTLP/HTTP port,
// reads an HTTP/1 response as a frame header: "frame too large" while
// reading the server preface. OTLP/HTTP to a gRPC server reads the
// server's HTTP/2 SETTINGS frame as a malformed HTTP/1 response.
func protocolHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server preface") && strings.Contains(msg, "frame too large"):
		return "the endpoint answers HTTP/1, not gRPC: is it an OTLP/HTTP port (4318)? Set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or use the gRPC port (4317)"
	case strings.Contains(msg, "malformed HTTP response") && strings.Contains(msg, `\x00\x00`),
		// The server spoke before the request was written, as an HTTP/2
		// server does (its SETTINGS frame) and an HTTP/1 one never does:
		// net/http then closes the connection with this error.
		strings.Contains(msg, "readLoopPeekFailLocked: %!w(<nil>)"):
		return "the endpoint answers gRPC (HTTP/2), not OTLP/HTTP: is it an OTLP/gRPC port (4317)? Unset OTEL_EXPORTER_OTLP_PROTOCOL (grpc is the default), or use the HTTP port (4318)"
	}
	return ""
}
