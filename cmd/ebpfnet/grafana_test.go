package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

const (
	dashboardFile = "../../examples/grafana/ebpfnet-dashboard.json"
	alertsDir     = "../../examples/prometheus"
)

// dashboard is the part of Grafana's dashboard model the example uses;
// decoding it strictly catches misspelt keys at the top and in panels.
type dashboard struct {
	UID          string                    `json:"uid"`
	Title        string                    `json:"title"`
	Description  string                    `json:"description"`
	Tags         []string                  `json:"tags"`
	Timezone     string                    `json:"timezone"`
	Editable     bool                      `json:"editable"`
	GraphTooltip int                       `json:"graphTooltip"`
	Schema       int                       `json:"schemaVersion"`
	Version      int                       `json:"version"`
	Refresh      string                    `json:"refresh"`
	Time         struct{ From, To string } `json:"time"`
	Templating   struct {
		List []struct {
			Name       string          `json:"name"`
			Label      string          `json:"label"`
			Type       string          `json:"type"`
			Datasource json.RawMessage `json:"datasource"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Refresh    int             `json:"refresh"`
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
			Multi      bool            `json:"multi"`
			Sort       int             `json:"sort"`
			Current    json.RawMessage `json:"current"`
			Hide       int             `json:"hide"`
		} `json:"list"`
	} `json:"templating"`
	Annotations json.RawMessage `json:"annotations"`
	Panels      []struct {
		ID          int                      `json:"id"`
		Type        string                   `json:"type"`
		Title       string                   `json:"title"`
		Datasource  json.RawMessage          `json:"datasource"`
		GridPos     struct{ X, Y, W, H int } `json:"gridPos"`
		FieldConfig json.RawMessage          `json:"fieldConfig"`
		Options     json.RawMessage          `json:"options"`
		Targets     []struct {
			RefID        string          `json:"refId"`
			Datasource   json.RawMessage `json:"datasource"`
			Expr         string          `json:"expr"`
			LegendFormat string          `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
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

// The dashboard is well formed (strictly decoded, every panel placed and
// with a query), and every panel's PromQL, taken from it, returns series
// from a real Prometheus that scrapes a real ebpfnet.
func TestDashboardQueriesReturnSeries(t *testing.T) {
	testenv.Privileged(t)
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Missing(t, "prometheus (Debian's prometheus package)")
	}
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels: %+v", d)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, want := range []string{"datasource", "instance", "interface"} {
		if !vars[want] {
			t.Errorf("no $%s variable", want)
		}
	}
	var exprs []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if p.Type == "" || p.Title == "" || p.GridPos.W == 0 || p.GridPos.H == 0 || len(p.Targets) == 0 || ids[p.ID] {
			t.Errorf("panel %d %q: type, title, size, targets and a unique id are required", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has a target without a query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}

	// ebpfnet with a Prometheus endpoint, on two interfaces with room for
	// one, so that the attach error series exists too.
	a := testenv.NewPair(t, "dash0")
	testenv.NewPair(t, "dash1") // over max_interfaces: an attach error
	port := testenv.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "ebpfnet.yaml")
	if err := os.WriteFile(cfg, []byte("max_interfaces: 1\n"), 0o644); err != nil {
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
	replace := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*", "$interface", ".*")
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
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string
		Error  string
		Data   struct{ Result []json.RawMessage }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("%s", out.Error)
	}
	return len(out.Data.Result), nil
}
