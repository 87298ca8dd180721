package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// binary builds the sidecar once per test run, or takes the one
// EBPFNET_BINARY names (the 6.1 VM has no Go toolchain).
func binary(t testing.TB) string { return buildSidecar(t, "EBPFNET_BINARY", "") }

// build is one build of the sidecar, with some build tags, made once.
type build struct {
	once sync.Once
	path string
	err  error
}

// builds are the sidecar's builds: as make build makes it (static,
// without cgo), and with the race detector (cgo).
var builds = map[string]*build{"": {}, "race": {}}

// buildSidecar builds the sidecar once per test run: as make build builds
// it, or with the race detector (kind "race"), or takes the binary the
// environment variable env names.
func buildSidecar(t testing.TB, env, kind string) string {
	t.Helper()
	if b := os.Getenv(env); b != "" {
		return b
	}
	b := builds[kind]
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "ebpfnet-bin")
		if err != nil {
			b.err = err
			return
		}
		// Readable by anyone: one test runs it without privileges.
		_ = os.Chmod(dir, 0o755)
		b.path = filepath.Join(dir, "ebpfnet")
		cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", b.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if kind == "race" {
			cmd = exec.Command("go", "build", "-race", "-o", b.path, ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// syncBuffer is an io.Writer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type sidecar struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

// startSidecar runs the built binary with only the given environment.
func startSidecar(t *testing.T, env []string, args ...string) *sidecar {
	t.Helper()
	return startCommand(t, env, binary(t), args...)
}

// startCommand runs name (the sidecar, or a wrapper that runs it) with only
// the given environment.
func startCommand(t *testing.T, env []string, name string, args ...string) *sidecar {
	t.Helper()
	s := &sidecar{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(name, args...)
	s.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("sidecar stderr:\n%s", s.stderr.String())
		}
	})
	return s
}

// started says whether the sidecar has logged its start line, which comes
// once the interfaces present at start are attached.
func (s *sidecar) started() bool { return strings.Contains(s.stderr.String(), "ebpfnet counting") }

// stop sends sig and returns the exit code. (How fast the exit is belongs
// to make bench; the final export is bounded by shutdownTimeout.)
func (s *sidecar) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
		s.done <- nil // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatalf("sidecar did not exit after %v", sig)
	}
	return s.cmd.ProcessState.ExitCode()
}

func otlpEnv(addr string) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
	}
}

// waitValues waits until the latest export satisfies ok.
func waitValues(t *testing.T, srv *otlptest.Server, ok func(map[string]int64) bool) map[string]int64 {
	t.Helper()
	var last map[string]int64
	if !testenv.Eventually(testenv.Patience, func() bool {
		md, found := srv.Latest()
		if found {
			last = otlptest.Values(md)
		}
		return found && ok(last)
	}) {
		t.Fatalf("no export matched within %v; last one:\n%s", testenv.Patience, dump(last))
	}
	return last
}

func dump(v map[string]int64) string {
	var b strings.Builder
	for k, n := range v {
		fmt.Fprintf(&b, "  %s = %d\n", k, n)
	}
	return b.String()
}

const packetsMetric = otlptest.PacketsMetric

func attachedIs(n int64) func(map[string]int64) bool {
	return func(v map[string]int64) bool { return v[otlptest.Key("ebpfnet.interfaces.attached")] == n }
}

func TestExportsExactCountsOverOTLP(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "otlp0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)

	sc := startSidecar(t, otlpEnv(srv.Addr), "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, attachedIs(1))

	want := otlptest.SendKnown(t, p)
	got := waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Matches(v, p.Local, want, testenv.LinkStats(t, p.Local).Sub(kbase))
	})

	md, _ := srv.Latest()
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	for key, want := range map[string]string{"service.name": "ebpfnet", "os.type": "linux"} {
		if v, ok := res.Get(key); !ok || v.AsString() != want {
			t.Errorf("resource %s = %v, want %s", key, v.AsString(), want)
		}
	}
	if _, ok := res.Get("host.name"); !ok {
		t.Error("resource has no host.name")
	}
	if scope := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().Name(); scope != "github.com/ebpfnet/ebpfnet/internal/metrics" {
		t.Errorf("scope %q", scope)
	}
	if code := sc.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("SIGINT: exit %d, want 0", code)
	}
	requireDetached(t, p)
	t.Logf("%d series exported", len(got))
}

func TestResourceFromEnvironment(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "res0")
	env := append(otlpEnv(srv.Addr), "OTEL_SERVICE_NAME=edge-agent", "OTEL_RESOURCE_ATTRIBUTES=k8s.node.name=node-7,deployment.environment.name=test")
	startSidecar(t, env, "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, attachedIs(1))
	md, _ := srv.Latest()
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	for key, want := range map[string]string{"service.name": "edge-agent", "k8s.node.name": "node-7", "deployment.environment.name": "test"} {
		if v, ok := res.Get(key); !ok || v.AsString() != want {
			t.Errorf("resource %s = %q, want %q", key, v.AsString(), want)
		}
	}
}

func requireDetached(t *testing.T, p *testenv.Pair) {
	t.Helper()
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
		t.Errorf("still attached: %v", got)
	}
}

// SIGTERM while traffic flows: the last export reaches the receiver, the
// process exits 0, and nothing stays attached.
func TestSIGTERMExportsOnceMoreAndDetaches(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "term0")
	// A long interval: only the export SIGTERM triggers can bring the
	// traffic sent after the first export.
	sc := startSidecar(t, otlpEnv(srv.Addr), "--interfaces", p.Local, "--interval", "3s")
	waitValues(t, srv, attachedIs(1))
	before, _ := srv.Requests()

	// Traffic goes on until the signal; at least the first 50 packets
	// were sent before it.
	stop := make(chan struct{})
	sent := make(chan struct{})
	first := make(chan struct{})
	go func() {
		defer close(sent)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
				p.SendUDP(t, false, true, 50, 100)
				if n == 0 {
					close(first)
				}
			}
		}
	}()
	select {
	case <-first:
	case <-sent: // the sender failed, and said why
		t.FailNow()
	}
	signalled := time.Now()
	code := sc.stop(t, syscall.SIGTERM)
	close(stop)
	<-sent
	if code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0", code)
	}
	n, at := srv.Requests()
	if n <= before || at.Before(signalled) {
		t.Errorf("no export after SIGTERM (%d exports before, %d after, last at %v, signal at %v)", before, n, at, signalled)
	}
	md, _ := srv.Latest()
	if got := otlptest.Totals(otlptest.Values(md), packetsMetric, p.Local, "receive"); got < 50 {
		t.Errorf("final export counted %d received packets; the traffic before SIGTERM was at least 50", got)
	}
	requireDetached(t, p)
}

// The Collector is down at start, for two failed exports: the sidecar
// keeps counting, logs the outage once, and when the Collector comes up the
// totals are exact.
func TestCollectorDownAtStart(t *testing.T) {
	testenv.Privileged(t)
	// Down: a port that takes connections and closes them at once, which
	// counts the exporter's attempts. Its broken pipes must not stop the
	// sidecar (they once did: SIGPIPE, taken for a closed stdout, came from
	// the exporter's socket).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var attempts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			c.Close()
		}
	}()

	p := testenv.NewPair(t, "down0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)
	sc := startSidecar(t, otlpEnv(addr), "--interfaces", p.Local, "--interval", "1s")
	testenv.WaitFor(t, "the start line, logged once attached", sc.started)
	want := otlptest.SendKnown(t, p)

	// One export failed (it is logged), and the next one is failing too.
	testenv.WaitFor(t, "the first failed export", func() bool { return strings.Contains(sc.stderr.String(), "export failing") })
	first := attempts.Load()
	testenv.WaitFor(t, "the next export's attempts", func() bool { return attempts.Load() > first })
	ln.Close()

	srv := otlptest.Start(t, addr)
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Matches(v, p.Local, want, testenv.LinkStats(t, p.Local).Sub(kbase))
	})
	if n := strings.Count(sc.stderr.String(), "export failing"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, sc.stderr.String())
	}
	// The export that got through returns (after its retries) a moment
	// after the data arrived.
	testenv.WaitFor(t, "the recovery logged", func() bool { return strings.Contains(sc.stderr.String(), "exports recovered") })
	if n := strings.Count(sc.stderr.String(), "exports recovered"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once:\n%s", n, sc.stderr.String())
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// OTLP/gRPC (the default) aimed at an OTLP/HTTP port, and OTLP/HTTP aimed
// at a gRPC port: the first failed export names the mismatch.
func TestProtocolMismatchIsNamed(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "proto0")
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	defer httpSrv.Close()
	grpcSrv := otlptest.Start(t, "127.0.0.1:0")
	for _, tc := range []struct {
		name string
		env  []string
		hint string
	}{
		{"grpc to an HTTP port", otlpEnv(httpSrv.Listener.Addr().String()), "the endpoint answers HTTP/1, not gRPC"},
		{"http/protobuf to a gRPC port", append(otlpEnv(grpcSrv.Addr), "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"), "the endpoint answers gRPC (HTTP/2), not OTLP/HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := startSidecar(t, tc.env, "--interfaces", p.Local, "--interval", "1s")
			testenv.WaitFor(t, "the first failed export", func() bool { return strings.Contains(sc.stderr.String(), "export failing") })
			if !strings.Contains(sc.stderr.String(), tc.hint) {
				t.Errorf("the failure does not name the mismatch (%q):\n%s", tc.hint, sc.stderr.String())
			}
			if code := sc.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
}

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

// OTEL_METRICS_EXPORTER takes a list: OTLP and a Prometheus endpoint at once.
func TestExporterList(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "list0")
	port := testenv.FreePort(t)
	env := append(otlpEnv(srv.Addr), "OTEL_METRICS_EXPORTER=otlp,prometheus",
		"OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1", fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", port))
	sc := startSidecar(t, env, "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, attachedIs(1))
	p.SendUDP(t, false, true, 7, 100)
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Totals(v, packetsMetric, p.Local, "receive") == 7
	})
	// The same count on the Prometheus endpoint, parsed as Prometheus
	// parses it, with host.name as a label.
	host, _ := os.Hostname()
	key := otlptest.Key("system_network_packet_count_total", "host_name="+host, "network_interface_name="+p.Local,
		"network_io_direction=receive", "network_transport=udp", "network_type=ipv4")
	var last map[string]float64
	if !testenv.Eventually(testenv.Patience, func() bool {
		last = scrapeProm(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		return last[key] == 7
	}) {
		t.Fatalf("the Prometheus endpoint never served %s = 7; it served:\n%v", key, last)
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestMissingPrivilegesSaysWhat(t *testing.T) {
	testenv.Privileged(t)
	cmd := exec.Command(binary(t), "--interfaces", "x")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	want := "ebpfnet: insufficient privileges: ebpfnet needs root, or CAP_BPF and CAP_NET_ADMIN (missing CAP_BPF and CAP_NET_ADMIN)"
	if code := cmd.ProcessState.ExitCode(); code != 1 || strings.TrimSpace(stderr.String()) != want {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and:\n%s", code, stderr.String(), want)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary(t), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "ebpfnet ") {
		t.Errorf("--version: %q, %v", out, err)
	}
}

// `make run`, as README tells a new user, in a test namespace: it builds,
// starts, and prints a table with the interface's traffic. It runs with
// the PATH sudo gives (Debian's secure_path), which has no Go in it.
func TestMakeRun(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "run0")
	cmd := exec.Command("/usr/bin/make", "-s", "run")
	cmd.Dir = "../.."
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "OTEL_METRIC_EXPORT_INTERVAL=1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		_ = cmd.Wait()
		requireDetached(t, p)
	}()

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(5 * testenv.Patience) // the first run builds
	sentTraffic := false
	var table []string
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("make run ended; output:\n%s", strings.Join(table, "\n"))
			}
			table = append(table, line)
			if strings.HasPrefix(line, "INTERFACE") && !sentTraffic {
				sentTraffic = true
				p.SendUDP(t, false, true, 10, 100)
			}
			f := strings.Fields(line)
			if sentTraffic && len(f) > 8 && f[0] == p.Local && f[1] == "rx" && f[7] == "10" {
				t.Logf("make run printed:\n%s", strings.Join(table[max(0, len(table)-8):], "\n"))
				return
			}
		case <-deadline:
			t.Fatalf("no table row with 10 UDP packets for %s; output:\n%s", p.Local, strings.Join(table, "\n"))
		}
	}
}

// resourceOf returns the resource attributes of the latest export.
func resourceOf(t *testing.T, srv *otlptest.Server) map[string]string {
	t.Helper()
	md, _ := srv.Latest()
	out := map[string]string{}
	md.ResourceMetrics().At(0).Resource().Attributes().Range(func(k string, v pcommon.Value) bool {
		out[k] = v.AsString()
		return true
	})
	return out
}

// service.instance.id is there without being set: the same across
// restarts, different in another network namespace (another pod), and the
// user's where OTEL_RESOURCE_ATTRIBUTES sets one. host.id is the machine-id.
func TestInstanceIdentity(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "ident0")
	run := func(env ...string) map[string]string {
		srv := otlptest.Start(t, "127.0.0.1:0")
		sc := startSidecar(t, append(otlpEnv(srv.Addr), env...), "--interfaces", p.Local, "--interval", "1s")
		waitValues(t, srv, attachedIs(1))
		res := resourceOf(t, srv)
		if code := sc.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("exit %d", code)
		}
		return res
	}
	first, again := run(), run()
	id := first["service.instance.id"]
	if _, err := uuid.Parse(id); err != nil || again["service.instance.id"] != id {
		t.Errorf("service.instance.id %q, then %q after a restart: want one UUID", id, again["service.instance.id"])
	}
	if machineID, err := os.ReadFile("/etc/machine-id"); err == nil {
		if got := first["host.id"]; got != strings.TrimSpace(string(machineID)) {
			t.Errorf("host.id %q, want the machine-id %q", got, strings.TrimSpace(string(machineID)))
		}
	}
	if mine := run("OTEL_RESOURCE_ATTRIBUTES=service.instance.id=edge-7"); mine["service.instance.id"] != "edge-7" {
		t.Errorf("service.instance.id %q, want the user's edge-7", mine["service.instance.id"])
	}

	// Another network namespace is another instance. It cannot reach this
	// namespace's OTLP endpoint: the console exporter prints the resource.
	other := testenv.NewNetns(t)
	var out syncBuffer
	err := testenv.RunIn(other, func() error {
		cmd := exec.Command(binary(t), "--interfaces", "none", "--interval", "1s")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OTEL_METRICS_EXPORTER=console"}
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
		testenv.Eventually(testenv.Patience, func() bool { return strings.Contains(out.String(), "service.instance.id") })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"Key":"service.instance.id","Value":\{"Type":"STRING","Value":"([^"]+)"`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no service.instance.id in the console output:\n%.2000s", out.String())
	}
	if m[1] == id {
		t.Errorf("another network namespace got the same service.instance.id %s", id)
	}
}

// Errors and drops come from the kernel's own interface statistics, per
// interface and direction, and exist from attach on: an idle interface is
// visible before it has counted a frame.
func TestErrorsAndDropsFromTheKernel(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "drops0")
	startSidecar(t, otlpEnv(srv.Addr), "--interfaces", p.Local, "--interval", "1s")
	key := func(metric, dir string) string {
		return otlptest.Key(metric, "network.interface.name="+p.Local, "network.io.direction="+dir)
	}
	const errorsMetric, droppedMetric = "system.network.errors", "system.network.packet.dropped"
	idle := waitValues(t, srv, attachedIs(1))
	for _, dir := range []string{"receive", "transmit"} {
		for _, m := range []string{errorsMetric, droppedMetric} {
			if _, ok := idle[key(m, dir)]; !ok {
				t.Errorf("idle interface has no %s", key(m, dir))
			}
		}
		if n := otlptest.Totals(idle, packetsMetric, p.Local, dir); n != 0 {
			t.Errorf("idle interface counted %d %s packets", n, dir)
		}
	}

	// veth drops (and counts as tx_dropped) a frame larger than its
	// peer's MTU.
	if err := testenv.RunIn(p.PeerNS, func() error {
		l, err := netlink.LinkByIndex(p.PeerIndex)
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(l, 1000)
	}); err != nil {
		t.Fatal(err)
	}
	p.SendRawDropped(t, testenv.Cat(testenv.Eth(0x88b5), make([]byte, 1400)), 9)
	l, err := netlink.LinkByName(p.Local)
	if err != nil {
		t.Fatal(err)
	}
	st := l.Attrs().Statistics
	if st.TxDropped == 0 {
		t.Fatalf("the kernel dropped nothing: %+v", st)
	}
	waitValues(t, srv, func(v map[string]int64) bool {
		return v[key(droppedMetric, "transmit")] == int64(st.TxDropped) && v[key(droppedMetric, "receive")] == int64(st.RxDropped) &&
			v[key(errorsMetric, "transmit")] == int64(st.TxErrors) && v[key(errorsMetric, "receive")] == int64(st.RxErrors)
	})
}

// The terminal table comes a second after start, not after a whole
// interval (an hour here), and the final one on SIGINT shows the rates of
// the last window, not zeros.
func TestTableFirstAndLast(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "table0")
	sc := startSidecar(t, nil, "--interfaces", p.Local, "--interval", "1h")
	if !testenv.Eventually(testenv.Patience, func() bool { return strings.Contains(sc.stdout.String(), "INTERFACE") }) {
		t.Fatalf("no table yet; stdout:\n%s", sc.stdout.String())
	}
	first := sc.stdout.String()
	if !strings.Contains(first, "1 interface attached") || !strings.Contains(first, "rates over the last") {
		t.Errorf("first table:\n%s", first)
	}
	p.SendUDP(t, false, true, 50, 100)
	if code := sc.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var last []string
	for _, line := range strings.Split(sc.stdout.String(), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[0] == p.Local && f[1] == "rx" {
			last = f
		}
	}
	if last == nil || last[2] != "50" || last[4] == "0.0" || last[4] == "-" || last[7] != "50" {
		t.Errorf("final table's row %v, want 50 UDP4 packets and a rate; stdout:\n%s", last, sc.stdout.String())
	}
}

// OTEL_LOG_LEVEL sets the level, --log-format json the format, and the
// start line says the attach mode actually used and the garbage collector's
// setting: defaultGOGC, or GOGC where set.
func TestLogLevelAndFormat(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "logs0")
	sc := startSidecar(t, []string{"OTEL_METRICS_EXPORTER=none", "OTEL_LOG_LEVEL=debug"}, "--interfaces", p.Local, "--log-format", "json")
	testenv.Eventually(testenv.Patience, sc.started)
	mode := "tc"
	if testenv.HasTCX() {
		mode = "tcx"
	}
	var debug, start bool
	for _, line := range strings.Split(strings.TrimSpace(sc.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		debug = debug || rec["level"] == "DEBUG"
		if rec["msg"] == "ebpfnet counting" {
			start = rec["attach"] == mode && rec["gogc"] == "50"
		}
	}
	if !debug || !start {
		t.Errorf("debug lines %v, start line with attach=%s gogc=50 %v:\n%s", debug, mode, start, sc.stderr.String())
	}
	sc.stop(t, syscall.SIGTERM)

	own := startSidecar(t, []string{"OTEL_METRICS_EXPORTER=none", "GOGC=80"}, "--interfaces", p.Local)
	testenv.Eventually(testenv.Patience, own.started)
	own.stop(t, syscall.SIGTERM)
	if !strings.Contains(own.stderr.String(), "gogc=80") {
		t.Errorf("with GOGC=80, the start line says:\n%s", own.stderr.String())
	}

	quiet := startSidecar(t, []string{"OTEL_METRICS_EXPORTER=none", "OTEL_LOG_LEVEL=error"}, "--interfaces", p.Local)
	testenv.Eventually(testenv.Patience, func() bool { return len(testenv.Attachments(t, p.LocalIndex)) != 0 })
	if code := quiet.stop(t, syscall.SIGTERM); code != 0 || quiet.stderr.String() != "" {
		t.Errorf("at level error: exit %d, stderr:\n%s", code, quiet.stderr.String())
	}
}
