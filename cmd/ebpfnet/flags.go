package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ebpfnet/ebpfnet/config"
)

const usage = `Usage: ebpfnet [--config FILE] [--interfaces GLOB,...] [--exclude GLOB,...]
               [--attach MODE] [--interval DUR] [--pin-path PATH]
               [--check-config] [--version]

Counts packets and bytes per interface, direction, IP version and transport
with eBPF, and exports them as OpenTelemetry metrics. Flags override the
config file. Needs root, or CAP_BPF and CAP_NET_ADMIN.

  --config FILE          YAML file with the shared schema (interfaces, attach,
                         directions, pin_path, max_interfaces)
  --interfaces GLOBS     interfaces to count, comma-separated shell globs or
                         /regular expressions/ (default "*")
  --exclude GLOBS        interfaces not to count (default "lo")
  --attach MODE          auto, tcx, tc or xdp (default auto)
  --interval DUR         export interval (default OTEL_METRIC_EXPORT_INTERVAL
                         milliseconds, else 10s)
  --pin-path PATH        pin counters and attachments in this bpffs directory,
                         so they outlive restarts
  --check-config         validate, print the effective configuration, exit
  --version              print the version, exit

The exporter is configured the OpenTelemetry way: OTEL_METRICS_EXPORTER
(otlp, console, prometheus, none), OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_PROTOCOL (grpc, the default here, or http/protobuf),
OTEL_EXPORTER_OTLP_INSECURE, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME (default ebpfnet). With none of
OTEL_METRICS_EXPORTER and the OTLP endpoints set, ebpfnet prints a
per-interface table to the terminal instead.
`

var errHelp = errors.New("help")

type options struct {
	configFile  string
	include     []string
	exclude     []string
	attach      string
	interval    time.Duration
	pinPath     string
	checkConfig bool
	version     bool
	set         map[string]bool // flags given on the command line
}

func parseFlags(args []string) (*options, error) {
	o := &options{set: map[string]bool{}}
	fs := flag.NewFlagSet("ebpfnet", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.configFile, "config", "", "")
	fs.Func("interfaces", "", func(v string) error { o.include = splitList(v); return nil })
	fs.Func("exclude", "", func(v string) error { o.exclude = splitList(v); return nil })
	fs.StringVar(&o.attach, "attach", "", "")
	fs.DurationVar(&o.interval, "interval", 0, "")
	fs.StringVar(&o.pinPath, "pin-path", "", "")
	fs.BoolVar(&o.checkConfig, "check-config", false, "")
	fs.BoolVar(&o.version, "version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if o.set["interval"] && o.interval <= 0 {
		return nil, fmt.Errorf("--interval must be positive, got %v", o.interval)
	}
	return o, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// settings is everything the sidecar runs with, validated.
type settings struct {
	config   config.Config
	interval time.Duration
	exporter string // table, otlp, console, prometheus or none
	protocol string // for otlp
}

// settings merges the defaults, the config file and the flags, reads the
// OTEL_* variables the sidecar interprets itself, and validates it all,
// reporting every problem.
func (o *options) settings() (*settings, error) {
	s := &settings{config: config.Default()}
	if o.configFile != "" {
		cfg, err := config.LoadFile(o.configFile)
		if err != nil {
			return nil, err
		}
		s.config = cfg
	}
	if o.set["interfaces"] {
		s.config.Interfaces.Include = o.include
	}
	if o.set["exclude"] {
		s.config.Interfaces.Exclude = o.exclude
	}
	if o.set["attach"] {
		s.config.Attach = o.attach
		// xdp counts receive only; with the mode chosen on the command
		// line and directions left at their default, say so rather than fail.
		if o.attach == config.AttachXDP && o.configFile == "" {
			s.config.Directions = []string{config.DirectionReceive}
		}
	}
	if o.set["pin-path"] {
		s.config.PinPath = o.pinPath
	}

	errs := []error{s.config.Validate()}
	var err error
	if s.interval, err = exportInterval(o); err != nil {
		errs = append(errs, err)
	}
	if s.exporter, s.protocol, err = exporterFromEnv(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// exportInterval is --interval, else OTEL_METRIC_EXPORT_INTERVAL (ms),
// else 10 s.
func exportInterval(o *options) (time.Duration, error) {
	if o.set["interval"] {
		return o.interval, nil
	}
	if v := os.Getenv("OTEL_METRIC_EXPORT_INTERVAL"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 {
			return 0, fmt.Errorf("OTEL_METRIC_EXPORT_INTERVAL: want a positive number of milliseconds, got %q", v)
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	return 10 * time.Second, nil
}

// exporterFromEnv chooses the exporter: OTEL_METRICS_EXPORTER if set, otlp
// if an OTLP endpoint is set, else the terminal table.
func exporterFromEnv() (exporter, protocol string, err error) {
	exporter = os.Getenv("OTEL_METRICS_EXPORTER")
	switch exporter {
	case "":
		exporter = "table"
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
			exporter = "otlp"
		}
	case "otlp", "console", "prometheus", "none":
	default:
		return "", "", fmt.Errorf("OTEL_METRICS_EXPORTER: unknown exporter %q (want otlp, console, prometheus or none)", exporter)
	}
	if exporter != "otlp" {
		return exporter, "", nil
	}
	protocol = os.Getenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
	key := "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
	if protocol == "" {
		protocol, key = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch protocol {
	case "":
		protocol = "grpc"
	case "grpc", "http/protobuf":
	default:
		return "", "", fmt.Errorf("%s: unknown protocol %q (want grpc or http/protobuf)", key, protocol)
	}
	return exporter, protocol, nil
}

// describe is --check-config's output: the effective configuration as YAML.
func (s *settings) describe() string {
	b, _ := yaml.Marshal(s.config)
	exporter := s.exporter
	if s.protocol != "" {
		exporter += " (" + s.protocol + ")"
	}
	return fmt.Sprintf("# ebpfnet: configuration is valid\n%s# sidecar\ninterval: %v\nexporter: %s\n", b, s.interval, exporter)
}
