package main

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// The backends of docs/backends.md, run for real: Prometheus 3 with its
// native OTLP receiver, and VictoriaMetrics, both built by make backends
// (bin/prometheus3, bin/victoria-metrics), each checked against the
// kernel's own counters with the names the docs tell users to query.

const prometheusOTLPExample = "../../examples/prometheus/prometheus-otlp.yml"

// backendBinary returns bin/NAME, which make backends builds from the Go
// module proxy (the tests' network namespaces cannot reach it).
func backendBinary(t *testing.T, name string) string {
	t.Helper()
	path, _ := filepath.Abs(filepath.Join("../../bin", name))
	if _, err := os.Stat(path); err != nil {
		testenv.Missing(t, "bin/"+name+" is not built: run make backends, or make test")
	}
	return path
}

// startBackend runs a backend's binary, and waits until GET ready answers
// 200.
func startBackend(t *testing.T, bin, ready string, args ...string) *sidecar {
	t.Helper()
	proc := startCommand(t, nil, bin, args...)
	testenv.WaitFor(t, filepath.Base(bin)+" to be ready", func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return proc
}

// prometheus3Config is examples/prometheus/prometheus-otlp.yml as shipped,
// but for the evaluation interval (1s here) and the rule file's path.
func prometheus3Config(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(prometheusOTLPExample)
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Abs(filepath.Join(alertsDir, "ebpfnet-alerts.yaml"))
	cfg := string(b)
	for old, repl := range map[string]string{
		"evaluation_interval: 15s\n": "evaluation_interval: 1s\n",
		"  - ebpfnet-alerts.yaml\n":  "  - " + rules + "\n",
	} {
		if strings.Count(cfg, old) != 1 {
			t.Fatalf("%s no longer has %q once", prometheusOTLPExample, old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	return cfg
}

// startPrometheus3 runs bin/prometheus3 with its OTLP receiver, the
// configuration cfg and flags, and returns its address.
func startPrometheus3(t *testing.T, cfg string, flags ...string) string {
	t.Helper()
	bin := backendBinary(t, "prometheus3")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args := append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + addr,
		"--web.enable-otlp-receiver"}, flags...)
	startBackend(t, bin, "http://"+addr+"/-/ready", args...)
	return addr
}

// otlpHTTPEnv sends the sidecar's metrics over OTLP/HTTP (protobuf) to
// endpoint, to which the exporter appends /v1/metrics.
func otlpHTTPEnv(endpoint string) []string {
	return []string{"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint}
}

// kernelByDirection is what the kernel counted on the interface, packets or
// bytes, by network_io_direction.
func kernelByDirection(k testenv.Stats, bytes bool) map[string]float64 {
	if bytes {
		return map[string]float64{"receive": float64(k.RxBytes), "transmit": float64(k.TxBytes)}
	}
	return map[string]float64{"receive": float64(k.RxPackets), "transmit": float64(k.TxPackets)}
}

// sameByDirection says whether r, by network_io_direction, is exactly want.
func sameByDirection(r []promSample, want map[string]float64) bool {
	got := map[string]float64{}
	for _, s := range r {
		got[s.Labels["network_io_direction"]] += s.Value
	}
	if len(got) != len(want) {
		return false
	}
	for dir, n := range want {
		if got[dir] != n {
			return false
		}
	}
	return true
}

// sameClasses says whether r, the series of one counter on one interface,
// is exactly the classes SendKnown sent, times times, and nothing else.
func sameClasses(r []promSample, want []otlptest.Series, times int64, bytes bool) bool {
	if len(r) != len(want) {
		return false
	}
	for _, w := range want {
		n := w.Packets
		if bytes {
			n = w.Bytes
		}
		found := false
		for _, s := range r {
			l := s.Labels
			if l["network_io_direction"] == w.Direction && l["network_type"] == w.NetworkType && l["network_transport"] == w.Transport {
				found = s.Value == float64(n*times)
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// The counters' names in Prometheus (and VictoriaMetrics with its
// Prometheus naming): docs/metrics.md.
const (
	promPackets = "system_network_packet_count_total"
	promBytes   = "system_network_io_bytes_total"
)

// checkExact waits until the backend at addr holds, for iface, exactly the
// classes SendKnown sent (times times) and, summed by direction, exactly
// what the kernel counted since base; it returns the packet series.
func checkExact(t *testing.T, addr, iface string, want []otlptest.Series, times int64, base testenv.Stats) []promSample {
	t.Helper()
	var packets []promSample
	for _, m := range []struct {
		name  string
		bytes bool
	}{{promPackets, false}, {promBytes, true}} {
		sel := fmt.Sprintf("%s{network_interface_name=%q}", m.name, iface)
		r := waitQuery(t, addr, m.name+" equal to the traffic sent", sel, func(r []promSample) bool {
			return sameClasses(r, want, times, m.bytes)
		})
		k := testenv.LinkStats(t, iface).Sub(base)
		if !sameByDirection(r, kernelByDirection(k, m.bytes)) {
			t.Fatalf("%s summed by direction is not what the kernel counted (%+v):\n%s", sel, k, showSamples(r))
		}
		if !m.bytes {
			packets = r
		}
	}
	return packets
}

// Prometheus 3 takes the sidecar's OTLP itself, configured as
// examples/prometheus/prometheus-otlp.yml ships: the series carry the
// counts the kernel made, under the names docs/metrics.md gives, with
// host_name promoted from the resource. The sidecar is then restarted
// without pins, counting from 0 again up past where it was, and increase()
// over the whole test is exactly what the kernel counted: what the flag
// created-timestamp-zero-ingestion, which docs/backends.md prescribes,
// makes true.
func TestPrometheus3OTLP(t *testing.T) {
	testenv.Privileged(t)
	addr := startPrometheus3(t, prometheus3Config(t), "--enable-feature=created-timestamp-zero-ingestion")
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.NewPair(t, "prom3otlp0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)
	begin := time.Now()
	env := otlpHTTPEnv("http://" + addr + "/api/v1/otlp")

	first := startSidecar(t, env, "--interfaces", p.Local, "--interval", "1s")
	testenv.WaitFor(t, "the start line, logged once attached", first.started)
	want := otlptest.SendKnown(t, p)
	r := checkExact(t, addr, p.Local, want, 1, kbase)
	for _, s := range r {
		// Identity: host.name promoted to a label; job and instance are
		// service.name and service.instance.id.
		if s.Labels["host_name"] != hostname || s.Labels["job"] != "ebpfnet" || len(s.Labels["instance"]) != 36 {
			t.Fatalf("want host_name=%q, job=ebpfnet and instance a UUID (service.instance.id): %v", hostname, s)
		}
	}
	if code := first.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}

	// Again without pins: the counts start from 0, with a new start time,
	// and this run's only export, at SIGTERM (the interval is an hour), has
	// twice the first run's: a reset that the values alone do not show.
	kmid := testenv.LinkStats(t, p.Local)
	second := startSidecar(t, env, "--interfaces", p.Local, "--interval", "1h")
	testenv.WaitFor(t, "the start line, logged once attached", second.started)
	otlptest.SendKnown(t, p)
	otlptest.SendKnown(t, p)
	if code := second.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	checkExact(t, addr, p.Local, want, 2, kmid)

	// increase() over a range that starts before the first run's start
	// time, evaluated at the timestamp of the last sample, is exact:
	// - each run's start time (its attach) was ingested as a 0 sample
	//   before its first value, so increase() counts the first run's first
	//   value and sees the second run start again from 0, though its value
	//   is above the first run's last;
	// - the first sample in the range is that 0, so increase() does not
	//   extrapolate to the range's start (its "duration to zero" is 0);
	// - the last sample is at the evaluation time, so there is nothing to
	//   extrapolate to at the end.
	// It is then the sum of the rises between samples: all the kernel
	// counted. Without the flag, the first run's first value is lost, the
	// reset unseen, and the result extrapolated.
	for _, m := range []struct {
		name  string
		bytes bool
	}{{promPackets, false}, {promBytes, true}} {
		sel := fmt.Sprintf("%s{network_interface_name=%q}", m.name, p.Local)
		ts, err := promQuery(addr, "max(timestamp("+sel+"))", time.Time{})
		if err != nil || len(ts) != 1 {
			t.Fatalf("timestamp of the last sample: %v %v", ts, err)
		}
		last := time.UnixMilli(int64(math.Round(ts[0].Value * 1000)))
		rng := last.Sub(begin).Truncate(time.Millisecond) + time.Second
		q := fmt.Sprintf("sum by (network_io_direction) (increase(%s[%dms]))", sel, rng.Milliseconds())
		r, err := promQuery(addr, q, last)
		if err != nil {
			t.Fatal(err)
		}
		k := testenv.LinkStats(t, p.Local).Sub(kbase)
		if want := kernelByDirection(k, m.bytes); !sameByDirection(r, want) {
			t.Errorf("%s at %s: want exactly the kernel's %v:\n%s", q, last.UTC().Format(time.RFC3339Nano), want, showSamples(r))
		}
	}
}

// VictoriaMetrics takes the sidecar's OTLP (over HTTP, protobuf) at
// /opentelemetry/v1/metrics; with -opentelemetry.usePrometheusNaming the
// series have the names and labels docs/metrics.md gives, and the counts
// the kernel made. (Without it, the names keep their dots:
// system.network.packet.count.)
func TestVictoriaMetrics(t *testing.T) {
	testenv.Privileged(t)
	bin := backendBinary(t, "victoria-metrics")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// -search.latencyOffset=0s: a query sees the latest samples at once,
	// not 30s later.
	startBackend(t, bin, "http://"+addr+"/health", "-storageDataPath="+t.TempDir(), "-httpListenAddr="+addr,
		"-opentelemetry.usePrometheusNaming", "-search.latencyOffset=0s")
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.NewPair(t, "vm0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)
	sc := startSidecar(t, otlpHTTPEnv("http://"+addr+"/opentelemetry"), "--interfaces", p.Local, "--interval", "1s")
	testenv.WaitFor(t, "the start line, logged once attached", sc.started)
	want := otlptest.SendKnown(t, p)
	for _, s := range checkExact(t, addr, p.Local, want, 1, kbase) {
		// VictoriaMetrics makes every resource attribute a label, and
		// makes no job or instance of them.
		if s.Labels["host_name"] != hostname || s.Labels["service_name"] != "ebpfnet" || len(s.Labels["service_instance_id"]) != 36 ||
			s.Labels["job"] != "" || s.Labels["instance"] != "" {
			t.Fatalf("want host_name=%q, service_name=ebpfnet, service_instance_id a UUID, and no job or instance: %v", hostname, s)
		}
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}
