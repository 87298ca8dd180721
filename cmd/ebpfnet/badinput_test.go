package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Bad input, by class: each case is one line naming what is wrong (the
// flag, the variable, or the file and line), exit 1 (2 for the command
// line), nothing loaded or attached, nothing left behind.
func TestBadInputIsOneClearLine(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "bad0")
	dir := t.TempDir()
	file := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ca, certPEM, keyPEM := testCertificates(t, dir)
	xdpTransmit := file("xdp.yaml", "attach: xdp\ndirections: [receive, transmit]\n")
	unknownKey := file("unknown.yaml", "interfaces:\n  include: [bad0]\nattach_mode: tc\n")
	good := file("good.yaml", "interfaces:\n  include: [bad0]\nattach: tc\n")
	fraction := file("fraction.yaml", "max_interfaces: 1.5\n")
	twoDocs := file("two.yaml", "attach: tc\n---\nattach: xdp\n")
	huge := file("huge.yaml", "# "+strings.Repeat("x", 2<<20)+"\n")
	neverInFile := file("never.yaml", "interfaces:\n  exclude:\n    - lo\n    - veth-of-my-long-pod*\n")
	notPEM := file("ca.txt", "not a certificate\n")
	climbing := dir + "/pins/../escaped" // not filepath.Join, which cleans it
	otlp := "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317"

	for _, class := range []struct {
		class string
		cases []struct {
			name string
			args []string
			env  []string
			code int
			line string
		}
	}{
		{"command line", []struct {
			name string
			args []string
			env  []string
			code int
			line string
		}{
			{"unknown flag", []string{"--interface", "x"}, nil, 2, "ebpfnet: flag provided but not defined: -interface (see ebpfnet --help)"},
			{"stray argument", []string{"run"}, nil, 2, `ebpfnet: unexpected argument "run" (see ebpfnet --help)`},
			{"bad interval flag", []string{"--interval", "soon"}, nil, 2, `ebpfnet: invalid value "soon" for flag -interval: want a duration such as 10s or 500ms, got "soon" (see ebpfnet --help)`},
			{"interval without unit", []string{"--interval", "10"}, nil, 2, `ebpfnet: invalid value "10" for flag -interval: want a duration with a unit, such as 10s or 500ms, got "10" (see ebpfnet --help)`},
			{"negative interval", []string{"--interval", "-1s"}, nil, 2, `ebpfnet: invalid value "-1s" for flag -interval: want from 100ms to 24h, got -1s (see ebpfnet --help)`},
			{"tiny interval", []string{"--interval", "1ns"}, nil, 2, `ebpfnet: invalid value "1ns" for flag -interval: want from 100ms to 24h, got 1ns (see ebpfnet --help)`},
			{"absurd interval", []string{"--interval", "2562047h"}, nil, 2, `ebpfnet: invalid value "2562047h" for flag -interval: want from 100ms to 24h, got 2562047h (see ebpfnet --help)`},
			{"bad log format", []string{"--log-format", "xml"}, nil, 1, `ebpfnet: --log-format: want text or json, got "xml"`},
		}},
		{"configuration, blamed on the flag or the file's line", []struct {
			name string
			args []string
			env  []string
			code int
			line string
		}{
			{"bad glob", []string{"--interfaces", "bad0,["}, nil, 1, `ebpfnet: --interfaces: bad glob "[": syntax error in pattern`},
			{"bad regex", []string{"--exclude", "/(/"}, nil, 1, "ebpfnet: --exclude: bad regular expression /(/: missing closing ): `^(?:()$`"},
			{"unknown attach", []string{"--attach", "kprobe"}, nil, 1, `ebpfnet: --attach: unknown mode "kprobe" (want auto, tcx, tc or xdp)`},
			{"check-config invalid", []string{"--check-config", "--attach", "bpf"}, nil, 1, `ebpfnet: --attach: unknown mode "bpf" (want auto, tcx, tc or xdp)`},
			{"xdp transmit", []string{"--config", xdpTransmit}, nil, 1, "ebpfnet: config file " + xdpTransmit + ": line 2: directions: xdp can only count receive: remove transmit, or use attach: tcx or tc"},
			{"unknown key", []string{"--config", unknownKey}, nil, 1, "ebpfnet: config file " + unknownKey + ": line 3: attach_mode: unknown key"},
			{"fractional max_interfaces", []string{"--config", fraction}, nil, 1, "ebpfnet: config file " + fraction + ": line 1: max_interfaces: want a whole number, got 1.5"},
			{"second document", []string{"--config", twoDocs}, nil, 1, "ebpfnet: config file " + twoDocs + ": line 2: a second YAML document; ebpfnet reads one"},
			{"never matches, flag", []string{"--interfaces", "bad0,eth0:1"}, nil, 1, `ebpfnet: --interfaces: "eth0:1" can never match an interface: interface names cannot contain ':'`},
			{"never matches, file", []string{"--config", neverInFile}, nil, 1, "ebpfnet: config file " + neverInFile + `: line 4: interfaces.exclude[1]: "veth-of-my-long-pod*" can never match an interface: it matches only names of 19 bytes or more, and interface names are at most 15`},
			{"relative pin path", []string{"--pin-path", "bpf/x"}, nil, 1, `ebpfnet: --pin-path: must be an absolute path, got "bpf/x"`},
			{"pin path climbs", []string{"--pin-path", climbing}, nil, 1, `ebpfnet: --pin-path: must not contain "..", got "` + climbing + `": name the directory itself`},
			{"bpffs root", []string{"--pin-path", "/sys/fs/bpf"}, nil, 1, "ebpfnet: --pin-path: /sys/fs/bpf is shared by every BPF tool: use a directory of ebpfnet's own, such as /sys/fs/bpf/ebpfnet"},
		}},
		{"files that are not files, or never end", []struct {
			name string
			args []string
			env  []string
			code int
			line string
		}{
			{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, 1, "ebpfnet: config file: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
			{"huge file", []string{"--config", huge}, nil, 1, "ebpfnet: config file: " + huge + " is larger than 1024 KiB; is it the right file?"},
			{"FIFO", []string{"--config", fifo}, nil, 1, "ebpfnet: config file: " + fifo + " is a FIFO, not a regular file"},
			{"FIFO, check-config", []string{"--config", fifo, "--check-config"}, nil, 1, "ebpfnet: config file: " + fifo + " is a FIFO, not a regular file"},
			{"character device", []string{"--config", "/dev/zero"}, nil, 1, "ebpfnet: config file: /dev/zero is a character device, not a regular file"},
			{"directory", []string{"--config", dir}, nil, 1, "ebpfnet: config file: " + dir + " is a directory, not a regular file"},
			{"FIFO certificate", nil, []string{otlp, "OTEL_EXPORTER_OTLP_CERTIFICATE=" + fifo}, 1, "ebpfnet: OTEL_EXPORTER_OTLP_CERTIFICATE: " + fifo + " is a FIFO, not a regular file"},
			{"missing certificate", nil, []string{otlp, "OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexistent/ca.pem"}, 1, "ebpfnet: OTEL_EXPORTER_OTLP_CERTIFICATE: open /nonexistent/ca.pem: no such file or directory"},
		}},
		{"certificates", []struct {
			name string
			args []string
			env  []string
			code int
			line string
		}{
			{"CA not PEM", nil, []string{otlp, "OTEL_EXPORTER_OTLP_CERTIFICATE=" + notPEM}, 1, "ebpfnet: OTEL_EXPORTER_OTLP_CERTIFICATE: " + notPEM + " holds no PEM certificate"},
			{"key without certificate", nil, []string{otlp, "OTEL_EXPORTER_OTLP_CLIENT_KEY=" + keyPEM}, 1, "ebpfnet: OTEL_EXPORTER_OTLP_CLIENT_KEY: a client key without a certificate: set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE too"},
			{"certificate without key", nil, []string{otlp, "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE=" + certPEM}, 1, "ebpfnet: OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE: a client certificate without a key: set OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY too"},
			{"key that is not the certificate's", nil, []string{otlp, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=" + certPEM, "OTEL_EXPORTER_OTLP_CLIENT_KEY=" + ca}, 1,
				"ebpfnet: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY: not a PEM certificate and its key: tls: found a certificate rather than a key in the PEM for the private key"},
		}},
		{"durations and numbers from the environment", []struct {
			name string
			args []string
			env  []string
			code int
			line string
		}{
			{"interval with a unit", nil, []string{"OTEL_METRIC_EXPORT_INTERVAL=10s"}, 1, `ebpfnet: OTEL_METRIC_EXPORT_INTERVAL: want a number of milliseconds from 100 to 86400000 (24h), got "10s"`},
			{"tiny interval", nil, []string{"OTEL_METRIC_EXPORT_INTERVAL=1"}, 1, `ebpfnet: OTEL_METRIC_EXPORT_INTERVAL: want a number of milliseconds from 100 to 86400000 (24h), got "1"`},
			{"interval that overflows", nil, []string{"OTEL_METRIC_EXPORT_INTERVAL=9223372036854775807"}, 1, `ebpfnet: OTEL_METRIC_EXPORT_INTERVAL: want a number of milliseconds from 100 to 86400000 (24h), got "9223372036854775807"`},
			{"negative interval", nil, []string{"OTEL_METRIC_EXPORT_INTERVAL=-5000"}, 1, `ebpfnet: OTEL_METRIC_EXPORT_INTERVAL: want a number of milliseconds from 100 to 86400000 (24h), got "-5000"`},
			{"export timeout that overflows", nil, []string{"OTEL_METRIC_EXPORT_TIMEOUT=99999999999999"}, 1, `ebpfnet: OTEL_METRIC_EXPORT_TIMEOUT: want a number of milliseconds from 1 to 3600000 (1h), got "99999999999999"`},
			{"OTLP timeout with a unit", nil, []string{otlp, "OTEL_EXPORTER_OTLP_TIMEOUT=10s"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_TIMEOUT: want a number of milliseconds from 1 to 3600000 (1h), got "10s"`},
			{"OTLP timeout that overflows", nil, []string{otlp, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT=18446744073709551616"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: want a number of milliseconds from 1 to 3600000 (1h), got "18446744073709551616"`},
			{"prometheus port", nil, []string{"OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT=abc"}, 1, `ebpfnet: OTEL_EXPORTER_PROMETHEUS_PORT: want a port, 1 to 65535, got "abc"`},
			{"prometheus port out of range", nil, []string{"OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT=70000"}, 1, `ebpfnet: OTEL_EXPORTER_PROMETHEUS_PORT: want a port, 1 to 65535, got "70000"`},
			{"prometheus host", nil, []string{"OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST=0.0.0.0:9464"}, 1, `ebpfnet: OTEL_EXPORTER_PROMETHEUS_HOST: want a host name or address, got "0.0.0.0:9464"`},
			{"endpoint port", nil, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:99999"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_ENDPOINT: port "99999" is not a port (1 to 65535)`},
		}},
		{"other variables", []struct {
			name string
			args []string
			env  []string
			code int
			line string
		}{
			{"unknown exporter", nil, []string{"OTEL_METRICS_EXPORTER=statsd"}, 1, `ebpfnet: OTEL_METRICS_EXPORTER: unknown exporter "statsd" (want otlp, console, prometheus or none, or a comma-separated list of them)`},
			{"exporter twice", nil, []string{"OTEL_METRICS_EXPORTER=otlp,otlp"}, 1, "ebpfnet: OTEL_METRICS_EXPORTER: otlp given twice"},
			{"unknown protocol", nil, []string{otlp, "OTEL_EXPORTER_OTLP_PROTOCOL=udp"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol "udp" (want grpc or http/protobuf)`},
			{"endpoint unparsable", nil, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://[::1"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_ENDPOINT: not a URL: "http://[::1"`},
			{"endpoint bad scheme", nil, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=ht!tp://x y"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_ENDPOINT: not a URL: "ht!tp://x y"`},
			{"endpoint without scheme", nil, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:4317"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_ENDPOINT: want a URL starting http:// or https://, got "127.0.0.1:4317"`},
			{"bad headers", nil, []string{otlp, "OTEL_EXPORTER_OTLP_HEADERS=api-key"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_HEADERS: "api-key" has no = (want key=value,... with values URL-encoded)`},
			{"bad compression", nil, []string{otlp, "OTEL_EXPORTER_OTLP_COMPRESSION=zstd"}, 1, `ebpfnet: OTEL_EXPORTER_OTLP_COMPRESSION: want gzip or none, got "zstd"`},
			{"bad resource attributes", nil, []string{"OTEL_RESOURCE_ATTRIBUTES==,=%zz"}, 1, `ebpfnet: OTEL_RESOURCE_ATTRIBUTES: "=" has no key (want key=value,... with values URL-encoded)`},
			{"bad log level", nil, []string{"OTEL_LOG_LEVEL=loud"}, 1, `ebpfnet: OTEL_LOG_LEVEL: want debug, info, warn or error, got "loud"`},
		}},
	} {
		t.Run(class.class, func(t *testing.T) {
			for _, tc := range class.cases {
				t.Run(tc.name, func(t *testing.T) {
					args := append([]string{"--interfaces", p.Local}, tc.args...)
					// Input that is wrongly accepted starts the sidecar:
					// a failure, not a hang.
					ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience)
					defer cancel()
					cmd := exec.CommandContext(ctx, binary(t), args...)
					cmd.Env = tc.env
					var stdout, stderr bytes.Buffer
					cmd.Stdout, cmd.Stderr = &stdout, &stderr
					_ = cmd.Run()
					if code := cmd.ProcessState.ExitCode(); code != tc.code {
						t.Errorf("exit %d, want %d", code, tc.code)
					}
					if got := strings.TrimRight(stderr.String(), "\n"); got != tc.line {
						t.Errorf("stderr:\n%s\nwant one line:\n%s", got, tc.line)
					}
					if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
						t.Errorf("attached after bad input: %v", got)
					}
				})
			}
		})
	}
	// Nothing was made where a refused pin path pointed.
	for _, left := range []string{filepath.Join(dir, "pins"), filepath.Join(dir, "escaped")} {
		if _, err := os.Stat(left); err == nil {
			t.Errorf("%s was made for a refused pin path", left)
		}
	}

	// --check-config on a good file: the effective configuration, flags
	// over the file, and nothing loaded.
	cmd := exec.Command(binary(t), "--config", good, "--check-config", "--exclude", "eth*,lo")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check-config: %v", err)
	}
	for _, want := range []string{"configuration is valid", "- bad0", "attach: tc", "- eth*", "- lo", "interval: 10s", "exporter: table"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
		t.Errorf("attached by --check-config: %v", got)
	}

	// --attach xdp over a file that does not set directions counts receive,
	// as without a file; a list of exporters is taken, and where each sends
	// is said.
	cmd = exec.Command(binary(t), "--config", good, "--attach", "xdp", "--check-config")
	cmd.Env = []string{"OTEL_METRICS_EXPORTER=otlp, prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST=0.0.0.0", "OTEL_EXPORTER_OTLP_ENDPOINT=http://gw:4317", "OTEL_EXPORTER_OTLP_TIMEOUT=5000"}
	out, err = cmd.Output()
	for _, want := range []string{"directions:\n    - receive\n", "exporter: otlp, prometheus\n", "otlp: {protocol: grpc, endpoint: http://gw:4317, timeout: 5s}\n", "prometheus: http://0.0.0.0:9464/metrics\n"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("check-config of --attach xdp over a file lacks %q (%v):\n%s", want, err, out)
		}
	}
}

// testCertificates writes a CA certificate, a client certificate and the
// client's key, in PEM, and returns their paths.
func testCertificates(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ebpfnet-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cert = write("client.pem", "CERTIFICATE", der)
	return write("ca.pem", "CERTIFICATE", der), cert, write("client-key.pem", "EC PRIVATE KEY", keyDER)
}
