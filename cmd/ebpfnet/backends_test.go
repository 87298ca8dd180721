package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	promquery "github.com/grafana/grafana-foundation-sdk/go/prometheus"

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

// promSample is one element of an instant query's vector.
type promSample struct {
	labels map[string]string
	value  float64
}

// query runs an instant query (at now when at is zero) against a
// Prometheus HTTP API (Prometheus' or VictoriaMetrics') and returns the
// vector.
func promQuery(addr, q string, at time.Time) ([]promSample, error) {
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	resp, err := http.Get("http://" + addr + "/api/v1/query?" + v.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status, Error string
		Data          struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s: %s", q, out.Error)
	}
	if out.Data.ResultType != "vector" {
		return nil, fmt.Errorf("%s: a %s, not a vector", q, out.Data.ResultType)
	}
	var r []promSample
	for _, e := range out.Data.Result {
		s, _ := e.Value[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %v: %w", q, e.Value[1], err)
		}
		r = append(r, promSample{e.Metric, f})
	}
	return r, nil
}

func (s promSample) String() string {
	keys := make([]string, 0, len(s.labels))
	for k := range s.labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q ", k, s.labels[k])
	}
	return fmt.Sprintf("{%s} %v", strings.TrimSpace(b.String()), s.value)
}

// waitQuery waits until q's result satisfies ok, and returns it.
func waitQuery(t *testing.T, addr, what, q string, ok func([]promSample) bool) []promSample {
	t.Helper()
	var (
		last []promSample
		err  error
	)
	if !testenv.Eventually(testenv.Patience, func() bool {
		last, err = promQuery(addr, q, time.Time{})
		return err == nil && ok(last)
	}) {
		t.Fatalf("%s: not within %v (%v); %s gave:\n%s", what, testenv.Patience, err, q, showSamples(last))
	}
	return last
}

func showSamples(r []promSample) string {
	var b strings.Builder
	for _, s := range r {
		fmt.Fprintf(&b, "  %v\n", s)
	}
	return b.String()
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
		got[s.labels["network_io_direction"]] += s.value
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
			l := s.labels
			if l["network_io_direction"] == w.Direction && l["network_type"] == w.NetworkType && l["network_transport"] == w.Transport {
				found = s.value == float64(n*times)
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
		if s.labels["host_name"] != hostname || s.labels["job"] != "ebpfnet" || len(s.labels["instance"]) != 36 {
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
		last := time.UnixMilli(int64(math.Round(ts[0].value * 1000)))
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
		if s.labels["host_name"] != hostname || s.labels["service_name"] != "ebpfnet" || len(s.labels["service_instance_id"]) != 36 ||
			s.labels["job"] != "" || s.labels["instance"] != "" {
			t.Fatalf("want host_name=%q, service_name=ebpfnet, service_instance_id a UUID, and no job or instance: %v", hostname, s)
		}
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// promAlert is one of /api/v1/alerts' alerts.
type promAlert struct {
	Labels, Annotations map[string]string
	State               string
}

// alerts returns the alerts a Prometheus server has, pending and firing.
func promAlerts(addr string) ([]promAlert, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string
		Data   struct{ Alerts []promAlert }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("/api/v1/alerts: status %s", out.Status)
	}
	return out.Data.Alerts, nil
}

// waitFiring waits until the only EbpfnetAttachErrors alert is firing, for
// error_type max_interfaces, and returns it.
func waitFiring(t *testing.T, addr string) promAlert {
	t.Helper()
	var (
		all, mine []promAlert
		err       error
	)
	if !testenv.Eventually(testenv.Patience, func() bool {
		all, err = promAlerts(addr)
		mine = mine[:0]
		for _, a := range all {
			if a.Labels["alertname"] == "EbpfnetAttachErrors" {
				mine = append(mine, a)
			}
		}
		return err == nil && len(mine) == 1 && mine[0].State == "firing" && mine[0].Labels["error_type"] == "max_interfaces"
	}) {
		t.Fatalf("EbpfnetAttachErrors (max_interfaces), alone, did not fire within %v (%v); alerts: %+v", testenv.Patience, err, all)
	}
	return mine[0]
}

// A sidecar with room for one interface starts where two match: the one
// refused is an attach error at start, exported in the first export, and
// the shipped EbpfnetAttachErrors fires on Prometheus 3 taking the OTLP as
// examples/prometheus/prometheus-otlp.yml configures it: the counter's
// start time, ingested as a 0 sample (created-timestamp-zero-ingestion),
// gives increase() the step from 0 that no export could show. The alert
// names the host by host_name.
func TestPrometheus3AttachErrorAlert(t *testing.T) {
	testenv.Privileged(t)
	addr := startPrometheus3(t, prometheus3Config(t), "--enable-feature=created-timestamp-zero-ingestion")
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	testenv.NewPair(t, "p3alert0")
	testenv.NewPair(t, "p3alert1") // over max_interfaces: refused
	cfg := filepath.Join(t.TempDir(), "ebpfnet.yaml")
	if err := os.WriteFile(cfg, []byte("max_interfaces: 1\ninterfaces:\n  include: [p3alert*]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startSidecar(t, otlpHTTPEnv("http://"+addr+"/api/v1/otlp"), "--config", cfg, "--interval", "1s")
	waitQuery(t, addr, "one refusal, and no other attach error", "ebpfnet_attach_errors_total", func(r []promSample) bool {
		got := map[string]float64{}
		for _, s := range r {
			got[s.labels["error_type"]] = s.value
		}
		return len(r) == 3 && got["max_interfaces"] == 1 && got["attach"] == 0 && got["file_limit"] == 0
	})
	a := waitFiring(t, addr)
	want := "ebpfnet on " + hostname + " cannot attach to some interfaces (max_interfaces)"
	if a.Labels["host_name"] != hostname || a.Annotations["summary"] != want {
		t.Errorf("alert %+v: want host_name %q and the summary %q", a, hostname, want)
	}
}

// The dashboard on Prometheus 3 fed over OTLP, with host.name promoted as
// examples/prometheus/prometheus-otlp.yml does: $host lists the agent's
// host name, and every panel's query, with $host set to it, returns series
// whose legends name the host by host_name (not by instance, the agent's
// service.instance.id, a UUID).
func TestPrometheus3Dashboard(t *testing.T) {
	testenv.Privileged(t)
	d := readDashboard(t)
	addr := startPrometheus3(t, prometheus3Config(t), "--enable-feature=created-timestamp-zero-ingestion")
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.NewPair(t, "p3dash0")
	cache := t.TempDir()
	testenv.CNIPod(t, cache, p, "shop", "cart", "7c9e6679-7425-40de-944b-e07fc1f90ae7")
	cfg := filepath.Join(t.TempDir(), "ebpfnet.yaml")
	if err := os.WriteFile(cfg, []byte("pods: {enabled: true, cni_cache_dir: "+cache+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startSidecar(t, otlpHTTPEnv("http://"+addr+"/api/v1/otlp"), "--config", cfg, "--interfaces", p.Local, "--interval", "1s")

	// Grafana runs label_values(SELECTOR, LABEL) as the label values API,
	// matching SELECTOR, with the variables before it set.
	replace := strings.NewReplacer("$__rate_interval", "1m", "$host", regexp.QuoteMeta(hostname), "$interface", p.Local,
		"$namespace", "shop", "$pod", "cart")
	variable := func(name, want string) {
		t.Helper()
		var def string
		for _, v := range d.Templating.List {
			if v.Name == name && v.Definition != nil {
				def = *v.Definition
			}
		}
		m := regexp.MustCompile(`^label_values\((.+), (\w+)\)$`).FindStringSubmatch(replace.Replace(def))
		if m == nil {
			t.Fatalf("$%s is %q, not label_values(selector, label)", name, def)
		}
		var values []string
		if !testenv.Eventually(testenv.Patience, func() bool {
			values = promLabelValues(addr, m[2], m[1])
			return len(values) == 1 && values[0] == want
		}) {
			t.Fatalf("%s: %v, want [%s]", def, values, want)
		}
	}
	// $host lists the agent once it reports: it is attached.
	variable("host", hostname)

	// Traffic of every kind the panels show. With the start times
	// ingested, rate() has a value from a series' first export on.
	p.SendUDP(t, false, true, 5, 100)
	p.SendUDP(t, true, false, 5, 100)
	p.Ping(t, 1, 100)
	p.SendRaw(t, true, testenv.Cat(testenv.Eth(0x88b5), make([]byte, 46)), 1) // non-IP

	// The pod's series are there from its first frame.
	variable("namespace", "shop")
	variable("pod", "cart")
	for _, panel := range d.Panels {
		for _, target := range panel.Panel.Targets {
			pq := target.(*promquery.Dataquery)
			legend := ""
			if pq.LegendFormat != nil {
				legend = *pq.LegendFormat
			}
			if strings.Contains(legend, "{{instance}}") {
				t.Errorf("panel %q: legend %q names hosts by instance", *panel.Panel.Title, legend)
			}
			q := replace.Replace(pq.Expr)
			waitQuery(t, addr, fmt.Sprintf("panel %q", *panel.Panel.Title), q, func(r []promSample) bool {
				if len(r) == 0 {
					return false
				}
				for _, s := range r {
					if strings.Contains(legend, "{{host_name}}") && s.labels["host_name"] != hostname {
						return false
					}
				}
				return true
			})
		}
	}
}

// labelValues returns label's values in the series matching match, or nil.
func promLabelValues(addr, label, match string) []string {
	resp, err := http.Get("http://" + addr + "/api/v1/label/" + label + "/values?" + url.Values{"match[]": {match}}.Encode())
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct{ Data []string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil
	}
	return out.Data
}
