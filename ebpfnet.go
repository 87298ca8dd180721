// Package ebpfnet is the module's entry point for the OpenTelemetry
// Collector Builder: with it, one plain line adds the ebpfnet receiver to a
// custom Collector's builder config,
//
//	receivers:
//	  - gomod: github.com/ebpfnet/ebpfnet v0.0.0
//	    path: /path/to/ebpfnet   # a checkout, until a tagged release
//
// The receiver itself is in package receiver; the standalone sidecar is
// cmd/ebpfnet.
package ebpfnet

import (
	otelreceiver "go.opentelemetry.io/collector/receiver"

	"github.com/ebpfnet/ebpfnet/receiver"
)

// NewFactory returns the ebpfnet receiver's factory.
func NewFactory() otelreceiver.Factory { return receiver.NewFactory() }
