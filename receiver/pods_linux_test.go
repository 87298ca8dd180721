package receiver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"github.com/ebpfnet/ebpfnet/internal/testenv/cri"
)

// Real pods (containerd through CRI, the CNI bridge plugin), counted by
// both front ends at once on the same host veths: the custom Collector
// with examples/otelcol/agent.yaml and the sidecar, both sending to the
// gateway of examples/otelcol/gateway.yaml, which a real Prometheus
// scrapes, as it scrapes the sidecar's own endpoint. In PromQL, without a
// join, each pod's traffic in its own view, summed by namespace and pod,
// is what the pod's own eth0 counted, and the same from every path.
func TestPodsThroughTheGateway(t *testing.T) {
	testenv.Privileged(t)
	bin := otelcol(t)
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Missing(t, "prometheus (Debian's prometheus package)")
	}
	h := cri.Start(t)
	a, b := h.RunPod(t, "shop", "cart"), h.RunPod(t, "db", "pg")

	// With its opt-in Prometheus endpoint (:8890), which Prometheus scrapes.
	gateway := startGateway(t, bin)
	agent := start(t, []string{"HOST_NAME=collector-node", "EBPFNET_INCLUDE=veth*", "EBPFNET_COLLECTION_INTERVAL=1s", "CNI_CACHE_DIR=" + h.CNICacheDir()},
		bin, "--config", filepath.Join(repoRoot, "examples", "otelcol", "agent.yaml"))
	dir := t.TempDir()
	conf := filepath.Join(dir, "ebpfnet.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("interfaces: {include: ['veth*']}\npods: {cni_cache_dir: %s}\n", h.CNICacheDir())), 0o600); err != nil {
		t.Fatal(err)
	}
	sidecarPort := testenv.FreePort(t)
	sidecar := start(t, []string{"OTEL_RESOURCE_ATTRIBUTES=host.name=sidecar-node", "OTEL_METRICS_EXPORTER=otlp,prometheus",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1", fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", sidecarPort)},
		sidecarBinary(t), "--config", conf, "--interval", "1s")

	promAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"+
		"scrape_configs:\n  - job_name: gateway\n    honor_labels: true\n    static_configs: [{targets: ['127.0.0.1:8890']}]\n"+
		"  - job_name: sidecar\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n", sidecarPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := start(t, nil, prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)

	// Both pods named on every path, then traffic.
	paths := map[string]string{
		"the Collector receiver, through the gateway": `host_name="collector-node",job!="sidecar"`,
		"the sidecar, through the gateway":            `host_name="sidecar-node",job!="sidecar"`,
		"the sidecar's own endpoint":                  `job="sidecar"`,
	}
	testenv.WaitFor(t, "both pods on every path", func() bool {
		for _, sel := range paths {
			s, err := promQuery(promAddr, fmt.Sprintf(`count(count by (k8s_pod_name) (k8s_pod_network_errors_total{%s}))`, sel))
			if err != nil || len(s) != 1 || s[0].Value != 2 {
				return false
			}
		}
		return true
	})
	base := map[*cri.Pod]testenv.Stats{a: a.Stats(t), b: b.Stats(t)}
	baseProm := map[string]map[string]int64{}
	query := func(path, metric string) map[string]int64 {
		s, err := promQuery(promAddr, fmt.Sprintf(`sum by (k8s_namespace_name, k8s_pod_name) (%s{network_io_direction="transmit",%s})`, metric, paths[path]))
		out := map[string]int64{}
		if err != nil {
			return out
		}
		for _, x := range s {
			out[x.Labels["k8s_namespace_name"]+"/"+x.Labels["k8s_pod_name"]] = int64(x.Value)
		}
		return out
	}
	// What each path has counted so far (the pods' start), in packets.
	for path := range paths {
		baseProm[path] = query(path, "k8s_pod_network_packet_count_total")
	}
	a.Ping(t, b.IP, 20)
	b.Ping(t, cri.Gateway, 10)

	var last string
	if !testenv.Eventually(testenv.Patience, func() bool {
		for path := range paths {
			got := query(path, "k8s_pod_network_packet_count_total")
			for _, p := range []*cri.Pod{a, b} {
				key := p.Namespace + "/" + p.Name
				sent := int64(p.Stats(t).Sub(base[p]).TxPackets)
				if got[key]-baseProm[path][key] != sent {
					last = fmt.Sprintf("%s: %s sent %d, PromQL says %d", path, key, sent, got[key]-baseProm[path][key])
					return false
				}
			}
		}
		return true
	}) {
		t.Fatal(last)
	}
	for _, p := range []*process{sidecar, agent, gateway, prom} {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exit %d", filepath.Base(p.cmd.Path), code)
		}
	}
}
