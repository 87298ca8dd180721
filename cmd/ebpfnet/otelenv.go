//go:build linux

package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ebpfnet/ebpfnet/config"
)

// otelEnv is every OTEL_* variable the sidecar reads, read and checked in
// this one place before anything is loaded: the OTLP exporters read their
// own variables again (the SDK's way), and would only log about a bad one
// (in their own words) before falling back to a default, sending to the
// wrong place.
type otelEnv struct {
	exporters []string // table, or some of otlp, console, prometheus; none is none of them
	interval  time.Duration
	logLevel  slog.Level

	// otlp
	protocol string // grpc or http/protobuf
	endpoint string // where the exporter sends, as it will resolve it
	timeout  time.Duration

	// prometheus
	promHost, promPort string
}

// Bounds of the durations read from the environment, which the SDK's
// conventions give in milliseconds: past them, a value is a mistake (and
// past about 290 years it overflows).
const (
	minInterval = 100 * time.Millisecond
	maxInterval = 24 * time.Hour
	maxTimeout  = time.Hour
)

// otelVariables are the variables readOTelEnv reads, for --help.
var otelVariables = []string{
	"OTEL_METRICS_EXPORTER", "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT",
	"OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT", "OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL",
	"OTEL_EXPORTER_OTLP_[METRICS_]HEADERS", "OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT",
	"OTEL_EXPORTER_OTLP_[METRICS_]COMPRESSION", "OTEL_EXPORTER_OTLP_[METRICS_]INSECURE",
	"OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE", "OTEL_EXPORTER_OTLP_[METRICS_]CLIENT_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_[METRICS_]CLIENT_KEY", "OTEL_EXPORTER_PROMETHEUS_HOST", "OTEL_EXPORTER_PROMETHEUS_PORT",
	"OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_LOG_LEVEL",
}

// readOTelEnv reads and checks the variables, reporting every problem,
// one line each, naming the variable.
func readOTelEnv(getenv func(string) string) (*otelEnv, error) {
	e := &otelEnv{}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	e.exporters, err = exporters(getenv)
	add(err)
	if v := getenv("OTEL_METRIC_EXPORT_INTERVAL"); v != "" {
		e.interval, err = millis("OTEL_METRIC_EXPORT_INTERVAL", v, minInterval, maxInterval)
		add(err)
	}
	if v := getenv("OTEL_METRIC_EXPORT_TIMEOUT"); v != "" {
		_, err = millis("OTEL_METRIC_EXPORT_TIMEOUT", v, time.Millisecond, maxTimeout)
		add(err)
	}
	e.logLevel, err = logLevel(getenv("OTEL_LOG_LEVEL"))
	add(err)
	add(checkKeyValues("OTEL_RESOURCE_ATTRIBUTES", getenv("OTEL_RESOURCE_ATTRIBUTES")))
	if slices.Contains(e.exporters, "otlp") {
		errs = append(errs, e.readOTLP(getenv)...)
	}
	if slices.Contains(e.exporters, "prometheus") {
		errs = append(errs, e.readPrometheus(getenv)...)
	}
	return e, errors.Join(errs...)
}

// exporters chooses the exporters: OTEL_METRICS_EXPORTER if set (a
// comma-separated list, as the specification allows), otlp if an OTLP
// endpoint is set, else the terminal table.
func exporters(getenv func(string) string) ([]string, error) {
	v := getenv("OTEL_METRICS_EXPORTER")
	if v == "" {
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
			return []string{"otlp"}, nil
		}
		return []string{"table"}, nil
	}
	var out []string
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		switch {
		case e != "otlp" && e != "console" && e != "prometheus" && e != "none":
			return nil, fmt.Errorf("OTEL_METRICS_EXPORTER: unknown exporter %q (want otlp, console, prometheus or none, or a comma-separated list of them)", e)
		case slices.Contains(out, e):
			return nil, fmt.Errorf("OTEL_METRICS_EXPORTER: %s given twice", e)
		}
		out = append(out, e)
	}
	if len(out) > 1 && slices.Contains(out, "none") {
		return nil, fmt.Errorf("OTEL_METRICS_EXPORTER: none together with other exporters (%s)", v)
	}
	if slices.Equal(out, []string{"none"}) {
		return nil, nil
	}
	return out, nil
}

// metricsVar returns the metrics-specific variable if set, else the general
// one, and the name of the one it returns: the OTLP exporter's precedence.
func metricsVar(getenv func(string) string, name string) (value, key string) {
	key = "OTEL_EXPORTER_OTLP_METRICS_" + name
	if v := getenv(key); v != "" {
		return v, key
	}
	key = "OTEL_EXPORTER_OTLP_" + name
	return getenv(key), key
}

// readOTLP checks the OTLP exporter's variables and resolves its endpoint.
func (e *otelEnv) readOTLP(getenv func(string) string) []error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	proto, key := metricsVar(getenv, "PROTOCOL")
	switch proto {
	case "", "grpc":
		e.protocol = "grpc" // the contract's default, where the SDK's is http/protobuf
	case "http/protobuf":
		e.protocol = proto
	default:
		add(fmt.Errorf("%s: unknown protocol %q (want grpc or http/protobuf)", key, proto))
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"} {
		add(checkEndpoint(key, getenv(key)))
	}
	e.endpoint = resolveEndpoint(getenv, e.protocol)
	for _, key := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"} {
		add(checkKeyValues(key, getenv(key)))
	}
	e.timeout = 10 * time.Second
	for _, key := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"} {
		if v := getenv(key); v != "" {
			d, err := millis(key, v, time.Millisecond, maxTimeout)
			add(err)
			if err == nil && (key == "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT" || getenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") == "") {
				e.timeout = d
			}
		}
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"} {
		if v := getenv(key); v != "" && v != "gzip" && v != "none" {
			add(fmt.Errorf("%s: want gzip or none, got %q", key, v))
		}
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_METRICS_INSECURE"} {
		if v := strings.ToLower(getenv(key)); v != "" && v != "true" && v != "false" {
			add(fmt.Errorf("%s: want true or false, got %q", key, getenv(key)))
		}
	}
	if v, key := metricsVar(getenv, "CERTIFICATE"); v != "" {
		add(checkCA(key, v))
	}
	cert, certKey := metricsVar(getenv, "CLIENT_CERTIFICATE")
	key, keyKey := metricsVar(getenv, "CLIENT_KEY")
	switch {
	case cert != "" && key == "":
		add(fmt.Errorf("%s: a client certificate without a key: set %s too", certKey, strings.Replace(certKey, "CERTIFICATE", "KEY", 1)))
	case key != "" && cert == "":
		add(fmt.Errorf("%s: a client key without a certificate: set %s too", keyKey, strings.Replace(keyKey, "KEY", "CERTIFICATE", 1)))
	case cert != "":
		add(checkKeyPair(certKey, cert, keyKey, key))
	}
	return errs
}

// resolveEndpoint is where the OTLP exporter will send: its own defaults,
// and for HTTP the /v1/metrics path it adds to the general endpoint.
func resolveEndpoint(getenv func(string) string, protocol string) string {
	if v := getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"); v != "" {
		return v
	}
	v := getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if protocol == "grpc" {
		if v == "" {
			return "http://localhost:4317"
		}
		return v
	}
	if v == "" {
		v = "http://localhost:4318"
	}
	return strings.TrimSuffix(v, "/") + "/v1/metrics"
}

func checkEndpoint(key, v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	switch {
	case !strings.Contains(v, "://"):
		return fmt.Errorf("%s: want a URL starting http:// or https://, got %q", key, v)
	case err != nil:
		return fmt.Errorf("%s: not a URL: %q", key, v)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%s: want http:// or https://, got %q", key, v)
	case u.Host == "":
		return fmt.Errorf("%s: no host in %q", key, v)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s: port %q is not a port (1 to 65535)", key, p)
		}
	}
	return nil
}

// checkCA checks a CA bundle: readable, a regular file, and PEM with at
// least one certificate, all of which parse.
func checkCA(key, path string) error {
	b, err := config.ReadRegular(path, config.MaxFileSize)
	if err != nil {
		return fmt.Errorf("%s: %v", key, err)
	}
	n := 0
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("%s: %s: certificate %d: %v", key, path, n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s: %s holds no PEM certificate", key, path)
	}
	return nil
}

func checkKeyPair(certKey, certPath, keyKey, keyPath string) error {
	cert, err := config.ReadRegular(certPath, config.MaxFileSize)
	if err != nil {
		return fmt.Errorf("%s: %v", certKey, err)
	}
	key, err := config.ReadRegular(keyPath, config.MaxFileSize)
	if err != nil {
		return fmt.Errorf("%s: %v", keyKey, err)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return fmt.Errorf("%s and %s: not a PEM certificate and its key: %v", certKey, keyKey, err)
	}
	return nil
}

// readPrometheus checks where the Prometheus endpoint listens: the
// specification's variables and defaults.
func (e *otelEnv) readPrometheus(getenv func(string) string) []error {
	var errs []error
	e.promHost, e.promPort = getenv("OTEL_EXPORTER_PROMETHEUS_HOST"), getenv("OTEL_EXPORTER_PROMETHEUS_PORT")
	if e.promHost == "" {
		e.promHost = "localhost"
	}
	if e.promPort == "" {
		e.promPort = "9464"
	}
	if strings.ContainsAny(e.promHost, " /\t") || strings.Count(e.promHost, ":") == 1 {
		errs = append(errs, fmt.Errorf("OTEL_EXPORTER_PROMETHEUS_HOST: want a host name or address, got %q", e.promHost))
	}
	if n, err := strconv.Atoi(e.promPort); err != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Errorf("OTEL_EXPORTER_PROMETHEUS_PORT: want a port, 1 to 65535, got %q", e.promPort))
	}
	return errs
}

// promAddr is where the Prometheus endpoint listens.
func (e *otelEnv) promAddr() string {
	return net.JoinHostPort(strings.Trim(e.promHost, "[]"), e.promPort)
}

// millis reads a number of milliseconds between lo and hi.
func millis(key, v string, lo, hi time.Duration) (time.Duration, error) {
	ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || ms < lo.Milliseconds() || ms > hi.Milliseconds() {
		return 0, fmt.Errorf("%s: want a number of milliseconds from %d to %d (%s), got %q", key, lo.Milliseconds(), hi.Milliseconds(), short(hi), v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// logLevel is OTEL_LOG_LEVEL, the SDKs' convention: debug, info, warn or
// error; info if unset.
func logLevel(v string) (slog.Level, error) {
	switch strings.ToLower(v) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("OTEL_LOG_LEVEL: want debug, info, warn or error, got %q", v)
}

// checkKeyValues checks a W3C-baggage-like list: key=value pairs,
// comma-separated, values percent-encoded.
func checkKeyValues(key, v string) error {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		var msg string
		switch {
		case !ok:
			msg = fmt.Sprintf("%q has no =", strings.TrimSpace(kv))
		case strings.TrimSpace(k) == "":
			msg = fmt.Sprintf("%q has no key", strings.TrimSpace(kv))
		default:
			if _, err := url.PathUnescape(strings.TrimSpace(val)); err != nil {
				msg = fmt.Sprintf("%q: bad percent-encoding", strings.TrimSpace(kv))
			}
		}
		if msg != "" {
			return fmt.Errorf("%s: %s (want key=value,... with values URL-encoded)", key, msg)
		}
	}
	return nil
}

// short writes d without zero minutes and seconds: 24h, not 24h0m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
