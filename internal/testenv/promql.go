package testenv

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// promAPI is client_golang's client of a Prometheus HTTP API at addr
// (host:port): Prometheus' own, or VictoriaMetrics', which speaks it.
func promAPI(addr string) (promv1.API, error) {
	c, err := api.NewClient(api.Config{Address: "http://" + addr})
	if err != nil {
		return nil, err
	}
	return promv1.NewAPI(c), nil
}

// PromSample is one element of an instant query's vector.
type PromSample struct {
	Labels map[string]string
	Value  float64
}

func (s PromSample) String() string {
	keys := slices.Sorted(maps.Keys(s.Labels))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q ", k, s.Labels[k])
	}
	return fmt.Sprintf("{%s} %v", strings.TrimSpace(b.String()), s.Value)
}

// PromQuery runs an instant query at the time at (now when it is zero) and
// returns the vector it gives; any other result is an error.
func PromQuery(addr, query string, at time.Time) ([]PromSample, error) {
	a, err := promAPI(addr)
	if err != nil {
		return nil, err
	}
	if at.IsZero() {
		at = time.Now()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, err := a.Query(ctx, query, at)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s: a %s, not a vector", query, v.Type())
	}
	out := make([]PromSample, 0, len(vec))
	for _, e := range vec {
		labels := make(map[string]string, len(e.Metric))
		for k, v := range e.Metric {
			labels[string(k)] = string(v)
		}
		out = append(out, PromSample{labels, float64(e.Value)})
	}
	return out, nil
}

// PromAlerts returns the alerts the server has, pending and firing.
func PromAlerts(addr string) ([]promv1.Alert, error) {
	a, err := promAPI(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := a.Alerts(ctx)
	return r.Alerts, err
}

// PromLabelValues returns label's values in the series that match.
func PromLabelValues(addr, label, match string) ([]string, error) {
	a, err := promAPI(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vs, _, err := a.LabelValues(ctx, label, []string{match}, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out, nil
}
