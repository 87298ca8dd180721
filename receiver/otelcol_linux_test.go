package receiver

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

const repoRoot = ".."

// otelcol returns bin/otelcol-ebpfnet, which `make otelcol` builds with the
// Collector Builder (and `make test` first of all: the tests run in a
// network namespace that cannot reach the Go module proxy).
func otelcol(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(repoRoot, "bin", "otelcol-ebpfnet"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		testenv.Missing(t, "bin/otelcol-ebpfnet is not built: run make otelcol, or make test")
	}
	return path
}

type process struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan struct{}
}

func start(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), output: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var mu sync.Mutex
	w := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return p.output.Write(b) })
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			mu.Lock()
			t.Logf("%s output:\n%s", filepath.Base(name), p.output.String())
			mu.Unlock()
		}
	})
	return p
}

func (p *process) stop(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(testenv.Patience):
		t.Fatalf("%s did not stop", p.cmd.Path)
	}
	return p.cmd.ProcessState.ExitCode()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// scrape reads a Prometheus endpoint into "metric{label=value,...}" ->
// value, labels sorted: the same keys as otlptest.Values, with Prometheus
// names.
func scrape(addr string) (map[string]int64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series, value := line[:i], line[i+1:]
		name, labels, _ := strings.Cut(series, "{")
		labels = strings.TrimSuffix(labels, "}")
		var kv []string
		for _, l := range strings.Split(labels, ",") {
			k, v, ok := strings.Cut(l, "=")
			// The series' own labels; not the resource's (host_name, ...),
			// job, instance or the scope's.
			if ok && (strings.HasPrefix(k, "network_") || k == "error_type") {
				kv = append(kv, k+"="+strings.Trim(v, `"`))
			}
		}
		sort.Strings(kv)
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		out[fmt.Sprintf("%s{%s}", name, strings.Join(kv, ","))] = int64(f)
	}
	return out, sc.Err()
}

// promKey is a series' key as the Prometheus exporter names it.
func promKey(metric string, s otlptest.Series, iface string) string {
	kv := []string{"network_interface_name=" + iface, "network_io_direction=" + s.Direction}
	if s.NetworkType != "" {
		kv = append(kv, "network_type="+s.NetworkType)
	}
	if s.Transport != "" {
		kv = append(kv, "network_transport="+s.Transport)
	}
	return otlptest.Key(metric, kv...)
}

// The custom Collector built by the Builder runs examples/otelcol/agent.yaml
// as is on a test interface; the scraped Prometheus values and the OTLP
// export both equal what was sent and the kernel's deltas. The sidecar,
// counting the same traffic, exports the same metrics.
func TestCustomCollectorEndToEnd(t *testing.T) {
	testenv.Privileged(t)
	bin := otelcol(t)
	p := testenv.NewPair(t, "col0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)

	fromCollector := otlptest.Start(t, "127.0.0.1:0")
	fromSidecar := otlptest.Start(t, "127.0.0.1:0")
	prom := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	col := start(t, []string{
		"HOST_NAME=node-col0",
		"EBPFNET_INCLUDE=" + p.Local,
		"EBPFNET_COLLECTION_INTERVAL=1s",
		"PROMETHEUS_ENDPOINT=" + prom,
		"OTLP_GATEWAY=" + fromCollector.Addr,
	}, bin, "--config", filepath.Join(repoRoot, "examples", "otelcol", "agent.yaml"))

	sidecar := sidecarBinary(t)
	sc := start(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + fromSidecar.Addr, "OTEL_EXPORTER_OTLP_INSECURE=true"},
		sidecar, "--interfaces", p.Local, "--interval", "1s")

	attached := otlptest.Key("ebpfnet.interfaces.attached")
	for _, srv := range []*otlptest.Server{fromCollector, fromSidecar} {
		testenv.WaitFor(t, "one interface attached, in an export", func() bool {
			md, ok := srv.Latest()
			return ok && otlptest.Values(md)[attached] == 1
		})
	}

	want := otlptest.SendKnown(t, p)
	kernel := func() testenv.Stats { return testenv.LinkStats(t, p.Local).Sub(kbase) }

	// OTLP out of the Collector.
	testenv.WaitFor(t, "the Collector's OTLP to match the traffic", func() bool {
		md, ok := fromCollector.Latest()
		return ok && otlptest.Matches(otlptest.Values(md), p.Local, want, kernel())
	})
	// Prometheus out of the Collector.
	testenv.WaitFor(t, "the Collector's Prometheus endpoint to match the traffic", func() bool {
		v, err := scrape(prom)
		if err != nil {
			return false
		}
		for _, s := range want {
			if v[promKey("system_network_packet_count_total", s, p.Local)] != s.Packets ||
				v[promKey("system_network_io_bytes_total", s, p.Local)] != s.Bytes {
				return false
			}
		}
		return true
	})
	// The sidecar, same traffic.
	testenv.WaitFor(t, "the sidecar's OTLP to match the traffic", func() bool {
		md, ok := fromSidecar.Latest()
		return ok && otlptest.Matches(otlptest.Values(md), p.Local, want, kernel())
	})

	// Both front ends: the same names, units, descriptions, attribute keys
	// and values, and the same counts.
	c, _ := fromCollector.Latest()
	s, _ := fromSidecar.Latest()
	// The receiver sets no identity; agent.yaml's resource processor does.
	res := c.ResourceMetrics().At(0).Resource().Attributes()
	for key, want := range map[string]string{"host.name": "node-col0", "service.instance.id": "node-col0", "service.name": "ebpfnet", "os.type": "linux"} {
		if v, ok := res.Get(key); !ok || v.AsString() != want {
			t.Errorf("collector resource %s = %q, want %q", key, v.AsString(), want)
		}
	}
	if a, b := describe(c), describe(s); a != b {
		t.Errorf("the receiver and the sidecar differ:\nreceiver:\n%s\nsidecar:\n%s", a, b)
	}
	cv, sv := otlptest.Values(c), otlptest.Values(s)
	for k, v := range cv {
		if strings.HasPrefix(k, "system.network.") && sv[k] != v {
			t.Errorf("%s: receiver %d, sidecar %d", k, v, sv[k])
		}
	}

	if code := col.stop(t); code != 0 {
		t.Errorf("collector exit %d", code)
	}
	if code := sc.stop(t); code != 0 {
		t.Errorf("sidecar exit %d", code)
	}
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
		t.Errorf("still attached: %v", got)
	}
}

// describe lists the network metrics' names, units, descriptions and the
// attribute sets of their points, sorted: what must match across front ends.
func describe(md pmetric.Metrics) string {
	var lines []string
	for _, m := range otlptest.Metrics(md) {
		if !strings.HasPrefix(m.Name(), "system.network.") {
			continue
		}
		sum := m.Sum()
		lines = append(lines, fmt.Sprintf("%s unit=%s monotonic=%v temporality=%s desc=%q",
			m.Name(), m.Unit(), sum.IsMonotonic(), sum.AggregationTemporality(), m.Description()))
		for p := 0; p < sum.DataPoints().Len(); p++ {
			lines = append(lines, "  "+otlptest.SeriesKey(m.Name(), sum.DataPoints().At(p).Attributes()))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// gatewayWithPrometheus turns on the example gateway's Prometheus
// endpoint (:8890), which is off by default.
const gatewayWithPrometheus = "GATEWAY_EXPORTERS=[prometheus, otlp_http]"

// startGateway runs the example gateway with its Prometheus endpoint on
// (examples/otelcol/gateway.yaml's ports), and waits for its health check.
func startGateway(t *testing.T, bin string) *process {
	t.Helper()
	gateway := start(t, []string{gatewayWithPrometheus}, bin, "--config", filepath.Join(repoRoot, "examples", "otelcol", "gateway.yaml"))
	testenv.WaitFor(t, "the gateway's health check", func() bool {
		resp, err := http.Get("http://127.0.0.1:13134/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return gateway
}

// The example gateway configuration is valid for the custom Collector, as
// shipped (OTLP only) and with its Prometheus exporter turned on; a
// misspelt exporter in GATEWAY_EXPORTERS fails, naming it.
func TestGatewayExampleIsValid(t *testing.T) {
	testenv.Privileged(t)
	bin := otelcol(t)
	validate := func(env ...string) ([]byte, error) {
		cmd := exec.Command(bin, "validate", "--config", filepath.Join(repoRoot, "examples", "otelcol", "gateway.yaml"))
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		return cmd.CombinedOutput()
	}
	for _, env := range [][]string{nil, {gatewayWithPrometheus}} {
		if out, err := validate(env...); err != nil {
			t.Errorf("validate gateway.yaml with %q: %v\n%s", env, err, out)
		}
	}
	out, err := validate("GATEWAY_EXPORTERS=[prometheus, otlp_htp]")
	if err == nil || !strings.Contains(string(out), `"otlp_htp"`) {
		t.Errorf("validate gateway.yaml with a misspelt exporter: %v; want an error naming otlp_htp\n%s", err, out)
	}
}

// A builder configuration outside this repository names the module with a
// plain gomod line and a path to the checkout, and builds with nothing but
// Go on the PATH: the committed bpf2go output means no clang.
func TestOwnBuilderConfigBuildsWithoutClang(t *testing.T) {
	testenv.Privileged(t)
	otelcol(t) // make otelcol installed the builder and filled the module cache
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The components of this repository's builder config, so that every
	// module is already in the cache that make otelcol filled: this test's
	// namespace has no route to the module proxy.
	ours, err := os.ReadFile(filepath.Join(root, "builder-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	components := string(ours[strings.Index(string(ours), "\nreceivers:"):])
	components = strings.Replace(components, "v0.0.0\n    path: .\n", "v0.0.0\n    path: "+root+"\n", 1)
	if !strings.Contains(components, "  - gomod: github.com/ebpfnet/ebpfnet v0.0.0\n    path: "+root+"\n") {
		t.Fatalf("builder-config.yaml no longer names the module plainly:\n%s", components)
	}
	cfg := fmt.Sprintf("dist:\n  name: my-otelcol\n  output_path: %s/out\n%s", dir, components)
	if err := os.WriteFile(filepath.Join(dir, "builder-config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// A PATH with go alone.
	pathDir := filepath.Join(dir, "path")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(pathDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(goBin, filepath.Join(pathDir, "go")); err != nil {
		t.Fatal(err)
	}
	builder := filepath.Join(root, "bin", "builder-v0.165.0")
	if _, err := os.Stat(builder); err != nil {
		testenv.Missing(t, "bin/builder-v0.165.0 is not installed: run make otelcol, or make test")
	}
	cmd := exec.Command(builder, "--config", filepath.Join(dir, "builder-config.yaml"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "CGO_ENABLED=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH="+pathDir, "CGO_ENABLED=0", "GOPROXY=off", "GOSUMDB=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("builder: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "out", "my-otelcol"), "components").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("name: ebpfnet")) {
		t.Errorf("components: %v\n%s", err, out)
	}
}
