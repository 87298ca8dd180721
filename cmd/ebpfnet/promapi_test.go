package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// promSample is one element of an instant query's vector.
type promSample = testenv.PromSample

// promQuery runs an instant query (at now when at is zero) against a
// Prometheus HTTP API (Prometheus' or VictoriaMetrics') with client_golang's
// client, and returns the vector.
func promQuery(addr, q string, at time.Time) ([]promSample, error) {
	return testenv.PromQuery(addr, q, at)
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

// promAlert is one of the server's alerts.
type promAlert struct {
	Labels, Annotations map[string]string
	State               string
}

// promAlerts returns the alerts a Prometheus server has, pending and firing.
func promAlerts(addr string) ([]promAlert, error) {
	all, err := testenv.PromAlerts(addr)
	if err != nil {
		return nil, err
	}
	out := make([]promAlert, 0, len(all))
	for _, a := range all {
		pa := promAlert{Labels: map[string]string{}, Annotations: map[string]string{}, State: string(a.State)}
		for k, v := range a.Labels {
			pa.Labels[string(k)] = string(v)
		}
		for k, v := range a.Annotations {
			pa.Annotations[string(k)] = string(v)
		}
		out = append(out, pa)
	}
	return out, nil
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

// promLabelValues returns label's values in the series matching match, or
// nil.
func promLabelValues(addr, label, match string) []string {
	vs, err := testenv.PromLabelValues(addr, label, match)
	if err != nil {
		return nil
	}
	return vs
}
