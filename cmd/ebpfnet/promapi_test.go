package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

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
