package main

//lint:file-ignore SA1019 Grafana's classic dashboard schema (dashboard, not dashboardv2) is what every Grafana imports; v2 is Grafana 12's alone.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	promquery "github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

const (
	dashboardFile = "../../examples/grafana/ebpfnet-dashboard.json"
	alertsDir     = "../../examples/prometheus"
)

// registerGrafanaPlugins registers the SDK's panel and query types, so
// that the strict decoding decodes each panel's options and field
// configuration by its type and each query by its data source's.
var registerGrafanaPlugins = sync.OnceFunc(plugins.RegisterDefaultPlugins)

// decodeDashboard decodes a dashboard strictly into the Grafana Foundation
// SDK's types, which are Grafana's dashboard schema: a required field
// missing or null, an unknown field, a value of the wrong type, in the
// dashboard, its variables, its panels, their options (by panel type) and
// their queries (by data source), is an error naming where; and the
// schema's constraints hold (Validate). Every panel must be of a type the
// SDK knows, with Prometheus queries, so that nothing went undecoded.
func decodeDashboard(b []byte) (dashboard.Dashboard, error) {
	registerGrafanaPlugins()
	// UnmarshalJSONStrict returns its list of errors, empty (not nil) when
	// there is none, and so (v0.0.22) leaves every panel out of what it
	// decodes (PanelOrRowPanel takes the empty list for an error): it
	// checks, and json.Unmarshal, by the same types, decodes.
	if err := new(dashboard.Dashboard).UnmarshalJSONStrict(b); err != nil {
		if errs, ok := err.(cog.BuildErrors); !ok || len(errs) > 0 {
			return dashboard.Dashboard{}, err
		}
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	if err := d.Validate(); err != nil {
		return d, err
	}
	var errs []error
	for i, p := range d.Panels {
		if p.Panel == nil {
			errs = append(errs, fmt.Errorf("panels[%d]: a row, not a panel", i))
			continue
		}
		if _, ok := p.Panel.Options.(*timeseries.Options); !ok {
			errs = append(errs, fmt.Errorf("panels[%d]: type %q, options %T: want a timeseries panel", i, p.Panel.Type, p.Panel.Options))
		}
		for j, q := range p.Panel.Targets {
			if _, ok := q.(*promquery.Dataquery); !ok {
				errs = append(errs, fmt.Errorf("panels[%d].targets[%d]: %T, not a Prometheus query", i, j, q))
			}
		}
	}
	return d, errors.Join(errs...)
}

func readDashboard(t *testing.T) dashboard.Dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := decodeDashboard(b)
	if err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// The dashboard is Grafana's schema, decoded strictly with the Grafana
// Foundation SDK; the decoding refuses a missing required field and an
// unknown one; and the file is what examples/grafana/gen (the dashboard
// as Go, with the SDK's builders) writes.
func TestDashboardSchema(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := decodeDashboard(b)
	if err != nil {
		t.Fatalf("%s is not Grafana's schema:\n%v", dashboardFile, err)
	}
	checkDashboard(t, d)

	t.Run("the decoding bites", func(t *testing.T) {
		for _, c := range []struct {
			what string
			edit func(d map[string]any)
			want string
		}{
			{"legend without calcs", func(d map[string]any) {
				delete(panelAt(d, 0)["options"].(map[string]any)["legend"].(map[string]any), "calcs")
			}, "panels[0].options.legend.calcs: required field is missing"},
			{"variable with an empty current", func(d map[string]any) {
				d["templating"].(map[string]any)["list"].([]any)[2].(map[string]any)["current"] = map[string]any{}
			}, "templating.list[2].current.value: required field is missing"},
			{"misspelt panel key", func(d map[string]any) {
				p := panelAt(d, 1)
				p["gridPosition"] = p["gridPos"]
				delete(p, "gridPos")
			}, "unexpected field 'gridPosition'"},
			{"misspelt option", func(d map[string]any) {
				panelAt(d, 2)["options"].(map[string]any)["tooltip"].(map[string]any)["sortt"] = "desc"
			}, "unexpected field 'sortt'"},
			{"misspelt query key", func(d map[string]any) {
				q := panelAt(d, 3)["targets"].([]any)[0].(map[string]any)
				q["exp"] = q["expr"]
				delete(q, "expr")
			}, "unexpected field 'exp'"},
			{"string for a number", func(d map[string]any) {
				panelAt(d, 4)["gridPos"].(map[string]any)["w"] = "12"
			}, "panels[4].gridPos.w"},
		} {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m)
			bad, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeDashboard(bad); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: decoding gave %v, want %q", c.what, err, c.want)
			}
		}
	})

	t.Run("generated", func(t *testing.T) {
		cmd := exec.Command("go", "run", "./examples/grafana/gen")
		cmd.Dir = "../.."
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go run ./examples/grafana/gen: %v\n%s", err, stderr.Bytes())
		}
		if !bytes.Equal(out, b) {
			t.Errorf("%s is not what examples/grafana/gen writes: run go run ./examples/grafana/gen -o examples/grafana/ebpfnet-dashboard.json", dashboardFile)
		}
	})
}

func panelAt(d map[string]any, i int) map[string]any {
	return d["panels"].([]any)[i].(map[string]any)
}

// checkDashboard checks what the tests and the README rely on: a uid and a
// title; the $datasource, $host and $interface variables; every panel
// with a title, a size, a unique id and queries.
func checkDashboard(t *testing.T, d dashboard.Dashboard) {
	t.Helper()
	if d.Uid == nil || *d.Uid == "" || d.Title == nil || *d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, want := range []string{"datasource", "host", "interface", "namespace", "pod"} {
		if !vars[want] {
			t.Errorf("no $%s variable", want)
		}
	}
	ids := map[uint32]bool{}
	for i, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		if p.Panel.Id == nil || ids[*p.Panel.Id] || p.Panel.Title == nil || *p.Panel.Title == "" || p.Panel.GridPos == nil ||
			p.Panel.GridPos.W == 0 || p.Panel.GridPos.H == 0 || len(p.Panel.Targets) == 0 {
			t.Errorf("panel %d: type, title, size, targets and a unique id are required", i)
			continue
		}
		ids[*p.Panel.Id] = true
	}
}

// panelQueries are the PromQL queries of the dashboard's panels.
func panelQueries(t *testing.T, d dashboard.Dashboard) []string {
	t.Helper()
	var exprs []string
	for _, p := range d.Panels {
		for _, q := range p.Panel.Targets {
			pq := q.(*promquery.Dataquery)
			if pq.Expr == "" {
				t.Errorf("panel %q has a target without a query", *p.Panel.Title)
			}
			exprs = append(exprs, pq.Expr)
		}
	}
	return exprs
}

// The alert rules pass promtool check rules and their unit tests.
func TestAlertRules(t *testing.T) {
	testenv.Privileged(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool (Debian's prometheus package)")
	}
	for _, args := range [][]string{{"check", "rules", "ebpfnet-alerts.yaml"}, {"test", "rules", "ebpfnet-alerts.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = alertsDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// A real sidecar with room for one interface, scraped by a real Prometheus
// (Debian's, 2.x) that evaluates the shipped rule file every second: it
// exports ebpfnet_attach_errors_total at 0 for every error_type before any
// error, as ebpfnet-alerts.test.yaml's input has it, so that when a second
// interface appears and is refused, increase() sees the step to 1 and
// EbpfnetAttachErrors fires, naming the agent by its host (the sidecar's
// Prometheus endpoint puts host.name on every series as host_name).
func TestAttachErrorAlertFires(t *testing.T) {
	testenv.Privileged(t)
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Missing(t, "prometheus (Debian's prometheus package)")
	}
	testenv.NewPair(t, "alert0")
	port := testenv.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "ebpfnet.yaml")
	if err := os.WriteFile(cfg, []byte("max_interfaces: 1\ninterfaces:\n  include: [alert*]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startSidecar(t, []string{"OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1",
		fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", port)}, "--config", cfg, "--interval", "1s")

	dir := t.TempDir()
	rules, _ := filepath.Abs(filepath.Join(alertsDir, "ebpfnet-alerts.yaml"))
	promAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	conf := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: ebpfnet\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n", rules, port)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startCommand(t, nil, prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)

	// Before any error: a 0 for every error_type, scraped and stored.
	waitQuery(t, promAddr, "ebpfnet_attach_errors_total at 0 for every error_type", "ebpfnet_attach_errors_total", func(r []promSample) bool {
		types := map[string]bool{}
		for _, s := range r {
			types[s.Labels["error_type"]] = s.Value == 0
		}
		return len(r) == 3 && types["max_interfaces"] && types["attach"] && types["file_limit"]
	})
	if a, err := promAlerts(promAddr); err != nil || len(a) != 0 {
		t.Fatalf("alerts before any error: %+v (%v)", a, err)
	}

	testenv.NewPair(t, "alert1") // one interface too many: refused
	a := waitFiring(t, promAddr)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ebpfnet on %s cannot attach to some interfaces (max_interfaces)", host)
	if a.Annotations["summary"] != want {
		t.Errorf("summary %q, want %q", a.Annotations["summary"], want)
	}
}

// The dashboard is well formed (strictly decoded into Grafana's schema,
// every panel placed and with a query), and every panel's PromQL, taken from it, returns series
// from a real Prometheus that scrapes a real ebpfnet.
func TestDashboardQueriesReturnSeries(t *testing.T) {
	testenv.Privileged(t)
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Missing(t, "prometheus (Debian's prometheus package)")
	}
	d := readDashboard(t)
	checkDashboard(t, d)
	exprs := panelQueries(t, d)

	// ebpfnet with a Prometheus endpoint, on two interfaces with room for
	// one, so that the attach error series exists too; the one counted is
	// a pod's, for the pod panels.
	a := testenv.NewPair(t, "dash0")
	cache := t.TempDir()
	testenv.CNIPod(t, cache, a, "shop", "cart", "7c9e6679-7425-40de-944b-e07fc1f90ae7")
	testenv.NewPair(t, "dash1") // over max_interfaces: an attach error
	port := testenv.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "ebpfnet.yaml")
	if err := os.WriteFile(cfg, []byte("max_interfaces: 1\npods: {enabled: true, cni_cache_dir: "+cache+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startSidecar(t, []string{"OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1",
		fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", port)},
		"--config", cfg, "--interfaces", "dash*", "--interval", "1s")

	dir := t.TempDir()
	promAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	conf := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: ebpfnet\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n", port)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startCommand(t, nil, prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)

	// Traffic of every kind the panels show, for a few scrapes.
	deadline := time.Now().Add(60 * time.Second)
	replace := strings.NewReplacer("$__rate_interval", "1m", "$host", ".*", "$interface", ".*", "$namespace", ".*", "$pod", ".*")
	for _, expr := range exprs {
		q := replace.Replace(expr)
		for {
			a.SendUDP(t, false, true, 5, 100)
			a.SendUDP(t, true, false, 5, 100)
			a.Ping(t, 1, 100)
			a.SendRaw(t, true, testenv.Cat(testenv.Eth(0x88b5), make([]byte, 46)), 1) // non-IP
			n, err := promSeries(promAddr, q)
			if err == nil && n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("panel query returned no series (%v): %s", err, q)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// promSeries runs an instant query and returns how many series it gave.
func promSeries(addr, query string) (int, error) {
	vec, err := testenv.PromQuery(addr, query, time.Time{})
	return len(vec), err
}
