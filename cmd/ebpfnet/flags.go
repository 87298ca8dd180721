//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
)

const usage = `Usage: ebpfnet [--config FILE] [--interfaces GLOB,...] [--exclude GLOB,...]
               [--attach MODE] [--interval DUR] [--pin-path PATH]
               [--log-format text|json] [--check-config] [--version]

Counts packets and bytes per interface, direction, IP version and transport
with eBPF, and exports them as OpenTelemetry metrics. Flags override the
config file. Needs root, or CAP_BPF and CAP_NET_ADMIN.

  --config FILE          YAML file with the shared schema (interfaces, attach,
                         directions, pin_path, max_interfaces)
  --interfaces GLOBS     interfaces to count, comma-separated shell globs or
                         /regular expressions/ (default "*")
  --exclude GLOBS        interfaces not to count (default "lo")
  --attach MODE          auto, tcx, tc or xdp (default auto; xdp counts receive)
  --interval DUR         export interval with its unit, 100ms to 24h (default
                         OTEL_METRIC_EXPORT_INTERVAL milliseconds, else 10s)
  --pin-path PATH        pin counters and attachments in this bpffs directory,
                         so they outlive restarts
  --log-format FORMAT    text (default) or json; the level is OTEL_LOG_LEVEL
                         (debug, info (default), warn, error)
  --check-config         validate, print the effective configuration and where
                         metrics go, exit
  --version              print the version, exit

Where metrics go is configured the OpenTelemetry way. OTEL_METRICS_EXPORTER is
otlp, console, prometheus or none, or a comma-separated list of them; with it
and the OTLP endpoints unset, ebpfnet prints a per-interface table instead.
OTLP is gRPC here unless OTEL_EXPORTER_OTLP_PROTOCOL is http/protobuf.
Prometheus serves /metrics on OTEL_EXPORTER_PROMETHEUS_HOST (localhost) and
OTEL_EXPORTER_PROMETHEUS_PORT (9464). service.name is ebpfnet unless
OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise. Every variable
read is checked at start:
  ` + "OTEL_VARIABLES" + `
Go's garbage collector runs at GOGC=50 unless GOGC is set.

Exit codes: 0 stopped by SIGINT or SIGTERM (after a last export) or --help,
--version, --check-config; 1 bad configuration or environment, missing
privileges, failure to start; 2 bad command line.
`

var errHelp = errors.New("help")

type options struct {
	configFile  string
	include     []string
	exclude     []string
	attach      string
	interval    time.Duration
	pinPath     string
	logFormat   string
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
	fs.Func("interval", "", func(v string) (err error) { o.interval, err = parseInterval(v); return err })
	fs.StringVar(&o.pinPath, "pin-path", "", "")
	fs.StringVar(&o.logFormat, "log-format", "text", "")
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
	return o, nil
}

// parseInterval reads --interval: a duration with its unit, within bounds.
func parseInterval(v string) (time.Duration, error) {
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return 0, fmt.Errorf("want a duration with a unit, such as 10s or 500ms, got %q", v)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 10s or 500ms, got %q", v)
	}
	if d < minInterval || d > maxInterval {
		return 0, fmt.Errorf("want from %s to %s, got %s", short(minInterval), short(maxInterval), short(d))
	}
	return d, nil
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
	sel      metrics.Selection
	env      *otelEnv
	interval time.Duration
	logJSON  bool
	gogc     string // the garbage collector's setting in effect (setGOGC)
}

// flagKeys are the configuration keys a flag sets.
var flagKeys = map[string]string{
	"interfaces.include": "interfaces",
	"interfaces.exclude": "exclude",
	"attach":             "attach",
	"pin_path":           "pin-path",
}

// settings merges the config file and the flags (the flags win), decodes
// and validates them as the receiver does its configuration, reads the
// OTEL_* variables, and reports every problem, each naming where it came
// from: a flag, or a line of the file.
func (o *options) settings(getenv func(string) string) (*settings, error) {
	file := &config.File{}
	if o.configFile != "" {
		var err error
		if file, err = config.ReadFile(o.configFile); err != nil {
			return nil, err
		}
	}
	raw := maps.Clone(file.Raw)
	if raw == nil {
		raw = map[string]any{}
	}
	overlay := func(key string, v any) {
		parent, name, nested := strings.Cut(key, ".")
		if !nested {
			raw[key] = v
			return
		}
		m, ok := raw[parent].(map[string]any)
		if !ok {
			m = map[string]any{}
		} else {
			m = maps.Clone(m)
		}
		m[name] = v
		raw[parent] = m
	}
	values := map[string]any{"interfaces": o.include, "exclude": o.exclude, "attach": o.attach, "pin-path": o.pinPath}
	for key, flagName := range flagKeys {
		if o.set[flagName] {
			overlay(key, values[flagName])
		}
	}

	s := &settings{}
	cfg, err := config.Decode(raw)
	if err == nil {
		err = cfg.Validate()
	}
	s.config, s.sel = cfg, metrics.NewSelection(cfg)
	errs := o.explain(file, err)
	if s.env, err = readOTelEnv(getenv); err != nil {
		errs = append(errs, err)
	}
	switch {
	case o.set["interval"]:
		s.interval = o.interval
	case s.env.interval != 0:
		s.interval = s.env.interval
	default:
		s.interval = 10 * time.Second
	}
	switch o.logFormat {
	case "text":
	case "json":
		s.logJSON = true
	default:
		errs = append(errs, fmt.Errorf("--log-format: want text or json, got %q", o.logFormat))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// explain says where each configuration problem came from: a flag, or
// the file and the line.
func (o *options) explain(file *config.File, err error) []error {
	keyed, errs := config.KeyErrors(err)
	for _, ke := range keyed {
		key, _, _ := strings.Cut(ke.Key, "[")
		switch flagName, ok := flagKeys[key]; {
		case ok && o.set[flagName]:
			errs = append(errs, fmt.Errorf("--%s: %s", flagName, ke.Msg))
		case file.Path != "" && file.Line(ke.Key) != 0:
			errs = append(errs, fmt.Errorf("config file %s: line %d: %w", file.Path, file.Line(ke.Key), ke))
		default:
			errs = append(errs, ke)
		}
	}
	return errs
}

// logger writes to w in the format and at the level the settings say.
func (s *settings) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.env.logLevel}
	if s.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// describe is --check-config's output: the effective configuration as
// YAML, then where the metrics go.
func (s *settings) describe() string {
	b, _ := yaml.Marshal(s.config)
	var out strings.Builder
	fmt.Fprintf(&out, "# ebpfnet: configuration is valid\n%s# sidecar\ninterval: %v\n", b, s.interval)
	exporters := s.env.exporters
	if len(exporters) == 0 {
		exporters = []string{"none"}
	}
	fmt.Fprintf(&out, "exporter: %s\n", strings.Join(exporters, ", "))
	for _, e := range exporters {
		switch e {
		case "otlp":
			fmt.Fprintf(&out, "otlp: {protocol: %s, endpoint: %s, timeout: %v}\n", s.env.protocol, s.env.endpoint, s.env.timeout)
		case "prometheus":
			fmt.Fprintf(&out, "prometheus: http://%s/metrics\n", s.env.promAddr())
		}
	}
	return out.String()
}
