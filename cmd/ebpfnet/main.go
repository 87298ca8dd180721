//go:build linux

// Command ebpfnet is the standalone sidecar/agent: it counts per-interface
// traffic with eBPF and exports it as OpenTelemetry metrics, configured the
// standard way through OTEL_* variables. With no exporter and no endpoint
// configured, it prints a per-interface table to the terminal.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/version"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // bad configuration, missing privileges, failure to start
	exitUsage = 2 // bad command line
)

// shutdownTimeout bounds the final export, so that SIGTERM ends the
// process within 5 s even when the Collector is unreachable.
const shutdownTimeout = 3 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, strings.Replace(usage, "OTEL_VARIABLES", wrap(strings.Join(otelVariables, ", "), 76, "\n  "), 1))
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ebpfnet: %v (see ebpfnet --help)\n", err)
		return exitUsage
	}
	if opts.version {
		fmt.Fprintf(stdout, "ebpfnet %s\n", version.Get())
		return exitOK
	}
	settings, err := opts.settings(os.Getenv)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "ebpfnet: %s\n", line)
		}
		return exitError
	}
	if opts.checkConfig {
		fmt.Fprint(stdout, settings.describe())
		return exitOK
	}

	settings.gogc = setGOGC()
	log := settings.logger(stderr)
	// SIGHUP (the terminal closed) and a closed stdout (ebpfnet | head)
	// end the process as SIGTERM does: with a final export and the hooks
	// detached, rather than at once with tc filters left behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, closed := context.WithCancel(ctx)
	defer closed()
	// SIGPIPE is taken and left unread: a write to a broken pipe then
	// fails with EPIPE instead of ending the process. On stdout that ends
	// it as above (pipeWatch); on the exporter's sockets (a Collector that
	// went away mid-request) it is an export error to retry, not a reason
	// to stop. (Not SIGPIPE in the stop signals: Go delivers the sockets'
	// too.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if err := serve(ctx, settings, pipeWatch{stdout, closed}, log); err != nil {
		fmt.Fprintf(stderr, "ebpfnet: %v\n", err)
		return exitError
	}
	return exitOK
}

// wrap breaks s into lines of at most width, joined by sep.
func wrap(s string, width int, sep string) string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines, line = append(lines, line), ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return strings.Join(append(lines, line), sep)
}

// defaultGOGC is the garbage collector's heap growth target unless GOGC
// says otherwise: half of Go's default of 100, under which the heap grows
// to twice what is live before a collection, and each export's transient
// memory with it. It trades a little CPU for less resident memory
// (BENCHMARKS.md has both). Prometheus sets 75 by default for the same
// reason.
const defaultGOGC = 50

// setGOGC applies defaultGOGC where GOGC is not set, and returns the
// setting in effect.
func setGOGC() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	debug.SetGCPercent(defaultGOGC)
	return strconv.Itoa(defaultGOGC)
}

// serve counts and exports until ctx ends, then exports once more and
// detaches.
func serve(ctx context.Context, s *settings, stdout io.Writer, log *slog.Logger) error {
	// The exporter comes first: a bad OTEL_* variable is reported before
	// anything is loaded into the kernel.
	starts := metrics.NewStartTimes()
	var abandon panicHook
	readers, tbl, err := s.newReaders(ctx, stdout, starts, &abandon, log)
	if err != nil {
		return err
	}
	res, err := s.resource(ctx)
	if err != nil {
		return err
	}
	otel.SetErrorHandler(newOutageLogger(log, s.interval, s.env.timeout))
	// What libraries write through the standard log package (net/http's
	// "Unsolicited response received on idle HTTP channel") comes out in
	// the sidecar's format and level, not as a stray line among JSON.
	slog.SetDefault(log)
	// The provider, and with it the reader, before anything slow: a reader
	// that exported before being registered logged a false failure.
	opts := []sdkmetric.Option{sdkmetric.WithResource(res),
		sdkmetric.WithCardinalityLimit(metrics.CardinalityLimit(s.config.MaxInterfaces, s.sel))}
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	provider := sdkmetric.NewMeterProvider(opts...)
	meter := provider.Meter(metrics.ScopeName, metric.WithInstrumentationVersion(version.Get()))

	d, err := datapath.Open(s.config, log)
	if err != nil {
		return err // nothing to export: no final export, no empty table
	}
	defer d.Close()
	abandon.set(d.Abandon)
	// Everything that needed more than CAP_BPF and CAP_NET_ADMIN (loading,
	// mounting a BPF filesystem for pin_path) is done.
	if err := datapath.DropCapabilities(); err != nil {
		return err
	}
	if _, err := metrics.Register(meter, starts.Source(d.Snapshot), s.sel, d.Abandon); err != nil {
		return err
	}
	logStart(log, s, d)
	if tbl != nil {
		// A user's first minute: a table a second after start, with rates
		// over that second, rather than after a whole interval.
		tbl.Baseline()
		_ = provider.ForceFlush(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			_ = provider.ForceFlush(ctx)
		}
	}

	<-ctx.Done()
	log.Info("stopping: exporting once more, then detaching")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := provider.Shutdown(sctx); err != nil {
		log.Warn("final export", "error", err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	return nil
}
func logStart(log *slog.Logger, s *settings, d *datapath.Datapath) {
	var snap snapshot.Snapshot
	_ = d.Snapshot(&snap)
	names := make([]string, 0, len(snap.Interfaces))
	for _, i := range snap.Interfaces {
		names = append(names, i.Name)
	}
	log.Info("ebpfnet counting", "interfaces", names, "attach", d.AttachMode(),
		"exporters", s.env.exporters, "interval", s.interval, "pin_path", s.config.PinPath, "gogc", s.gogc)
}

// panicHook is what an exporter's panic (in a goroutine of the SDK's) calls
// before it goes on: the datapath's Abandon, once there is a datapath.
type panicHook struct{ fn atomic.Pointer[func()] }

func (h *panicHook) set(fn func()) { h.fn.Store(&fn) }

func (h *panicHook) fire() {
	if fn := h.fn.Load(); fn != nil {
		(*fn)()
	}
}

// pipeWatch is stdout, calling closed when a write finds its reader gone.
type pipeWatch struct {
	io.Writer
	closed func()
}

// Fd is the file's, for the table's terminal width, or none.
func (w pipeWatch) Fd() uintptr {
	if f, ok := w.Writer.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

func (w pipeWatch) Write(p []byte) (int, error) {
	n, err := w.Writer.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		w.closed()
	}
	return n, err
}
