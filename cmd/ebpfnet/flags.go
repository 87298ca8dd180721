package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ebpfnet/ebpfnet/config"
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
  --attach MODE          auto, tcx, tc or xdp (default auto)
  --interval DUR         export interval (default OTEL_METRIC_EXPORT_INTERVAL
                         milliseconds, else 10s)
  --pin-path PATH        pin counters and attachments in this bpffs directory,
                         so they outlive restarts
  --log-format FORMAT    text (default) or json; the level is OTEL_LOG_LEVEL
                         (debug, info (default), warn, error)
  --check-config         validate, print the effective configuration, exit
  --version              print the version, exit

The exporter is configured the OpenTelemetry way: OTEL_METRICS_EXPORTER
(otlp, console, prometheus, none), OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_PROTOCOL (grpc, the default here, or http/protobuf),
OTEL_EXPORTER_OTLP_INSECURE, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME (default ebpfnet). With none of
OTEL_METRICS_EXPORTER and the OTLP endpoints set, ebpfnet prints a
per-interface table to the terminal instead. Go's garbage collector runs
at GOGC=50 unless GOGC is set (less memory; GOGC=100 for a little less CPU).
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
	fs.DurationVar(&o.interval, "interval", 0, "")
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
	if o.set["interval"] && o.interval < minInterval {
		return nil, fmt.Errorf("--interval must be at least %v, got %v", minInterval, o.interval)
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
	config    config.Config
	interval  time.Duration
	exporters []string // table, or some of otlp, console, prometheus; none is none of them
	protocol  string   // for otlp
	logLevel  slog.Level
	logJSON   bool
	gogc      string // the garbage collector's setting in effect (setGOGC)
}

// settings merges the defaults, the config file and the flags, reads the
// OTEL_* variables the sidecar interprets itself, and validates it all,
// reporting every problem.
func (o *options) settings() (*settings, error) {
	s := &settings{config: config.Default()}
	fileKeys := map[string]bool{}
	if o.configFile != "" {
		cfg, keys, err := config.LoadFileKeys(o.configFile)
		if err != nil {
			return nil, err
		}
		s.config, fileKeys = cfg, keys
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
		if o.attach == config.AttachXDP && !fileKeys["directions"] {
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
	if s.exporters, s.protocol, err = exportersFromEnv(); err != nil {
		errs = append(errs, err)
	} else if slices.Contains(s.exporters, "otlp") {
		errs = append(errs, checkOTLPEnv()...)
	}
	errs = append(errs, checkResourceEnv())
	if s.logLevel, err = logLevelFromEnv(); err != nil {
		errs = append(errs, err)
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

// logLevelFromEnv is OTEL_LOG_LEVEL, the SDKs' convention: debug, info,
// warn or error; info if unset.
func logLevelFromEnv() (slog.Level, error) {
	switch v := strings.ToLower(os.Getenv("OTEL_LOG_LEVEL")); v {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	default:
		return 0, fmt.Errorf("OTEL_LOG_LEVEL: want debug, info, warn or error, got %q", v)
	}
}

// logger writes to w in the format and at the level the settings say.
func (s *settings) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.logLevel}
	if s.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// minInterval is the shortest export interval: shorter ones only burn a
// core reading counters nobody can look at that often.
const minInterval = 100 * time.Millisecond

// exportInterval is --interval, else OTEL_METRIC_EXPORT_INTERVAL (ms),
// else 10 s.
func exportInterval(o *options) (time.Duration, error) {
	if o.set["interval"] {
		return o.interval, nil
	}
	if v := os.Getenv("OTEL_METRIC_EXPORT_INTERVAL"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < minInterval.Milliseconds() {
			return 0, fmt.Errorf("OTEL_METRIC_EXPORT_INTERVAL: want a number of milliseconds, at least %d, got %q", minInterval.Milliseconds(), v)
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	return 10 * time.Second, nil
}

// exportersFromEnv chooses the exporters: OTEL_METRICS_EXPORTER if set (a
// comma-separated list, as the specification allows), otlp if an OTLP
// endpoint is set, else the terminal table.
func exportersFromEnv() (exporters []string, protocol string, err error) {
	v := os.Getenv("OTEL_METRICS_EXPORTER")
	if v == "" {
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
			exporters = []string{"otlp"}
		} else {
			exporters = []string{"table"}
		}
	}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		switch {
		case v == "":
		case e != "otlp" && e != "console" && e != "prometheus" && e != "none":
			return nil, "", fmt.Errorf("OTEL_METRICS_EXPORTER: unknown exporter %q (want otlp, console, prometheus or none, or a comma-separated list of them)", e)
		case slices.Contains(exporters, e):
			return nil, "", fmt.Errorf("OTEL_METRICS_EXPORTER: %s given twice", e)
		default:
			exporters = append(exporters, e)
		}
	}
	if len(exporters) > 1 && slices.Contains(exporters, "none") {
		return nil, "", fmt.Errorf("OTEL_METRICS_EXPORTER: none together with other exporters (%s)", v)
	}
	if slices.Equal(exporters, []string{"none"}) {
		exporters = nil
	}
	if !slices.Contains(exporters, "otlp") {
		return exporters, "", nil
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
		return nil, "", fmt.Errorf("%s: unknown protocol %q (want grpc or http/protobuf)", key, protocol)
	}
	return exporters, protocol, nil
}

// checkOTLPEnv checks the OTLP exporter's variables, which the exporter
// itself would only log about (in its own words) before falling back to
// its defaults: the sidecar would then send to the wrong place.
func checkOTLPEnv() []error {
	var errs []error
	for _, key := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"} {
		v := os.Getenv(key)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		switch {
		case !strings.Contains(v, "://"):
			errs = append(errs, fmt.Errorf("%s: want a URL starting http:// or https://, got %q", key, v))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: not a URL: %q", key, v))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("%s: want http:// or https://, got %q", key, v))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("%s: no host in %q", key, v))
		}
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"} {
		if err := checkKeyValues(os.Getenv(key)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v (want key=value,... with values URL-encoded)", key, err))
		}
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"} {
		if v := os.Getenv(key); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err != nil || ms <= 0 {
				errs = append(errs, fmt.Errorf("%s: want a positive number of milliseconds, got %q", key, v))
			}
		}
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"} {
		if v := os.Getenv(key); v != "" && v != "gzip" && v != "none" {
			errs = append(errs, fmt.Errorf("%s: want gzip or none, got %q", key, v))
		}
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_METRICS_INSECURE"} {
		if v := strings.ToLower(os.Getenv(key)); v != "" && v != "true" && v != "false" {
			errs = append(errs, fmt.Errorf("%s: want true or false, got %q", key, os.Getenv(key)))
		}
	}
	for _, key := range []string{
		"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY",
		"OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
	} {
		if v := os.Getenv(key); v != "" {
			if f, err := os.Open(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", key, err))
			} else {
				f.Close()
			}
		}
	}
	return errs
}

// checkResourceEnv checks OTEL_RESOURCE_ATTRIBUTES, which the SDK would
// otherwise take in part.
func checkResourceEnv() error {
	if err := checkKeyValues(os.Getenv("OTEL_RESOURCE_ATTRIBUTES")); err != nil {
		return fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %v (want key=value,... with values URL-encoded)", err)
	}
	return nil
}

// checkKeyValues checks a W3C-baggage-like list: key=value pairs,
// comma-separated, values percent-encoded.
func checkKeyValues(v string) error {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return fmt.Errorf("%q has no =", strings.TrimSpace(kv))
		case strings.TrimSpace(k) == "":
			return fmt.Errorf("%q has no key", strings.TrimSpace(kv))
		}
		if _, err := url.PathUnescape(strings.TrimSpace(val)); err != nil {
			return fmt.Errorf("%q: bad percent-encoding", strings.TrimSpace(kv))
		}
	}
	return nil
}

// describe is --check-config's output: the effective configuration as YAML.
func (s *settings) describe() string {
	b, _ := yaml.Marshal(s.config)
	exporter := strings.Join(s.exporters, ", ")
	if len(s.exporters) == 0 {
		exporter = "none"
	}
	if s.protocol != "" {
		exporter += " (otlp over " + s.protocol + ")"
	}
	return fmt.Sprintf("# ebpfnet: configuration is valid\n%s# sidecar\ninterval: %v\nexporter: %s\n", b, s.interval, exporter)
}
