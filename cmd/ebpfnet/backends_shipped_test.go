package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	promquery "github.com/grafana/grafana-foundation-sdk/go/prometheus"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

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
			got[s.Labels["error_type"]] = s.Value
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
					if strings.Contains(legend, "{{host_name}}") && s.Labels["host_name"] != hostname {
						return false
					}
				}
				return true
			})
		}
	}
}
