//go:build linux

// Package otlptest is a real OTLP/gRPC metrics endpoint for end-to-end
// tests: the OTLP protobuf MetricsService on a local port, keeping what it
// receives, with helpers to read the latest cumulative values.
package otlptest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the Collector's OTLP exporter compresses by default
)

// Server receives OTLP metrics over gRPC.
type Server struct {
	pmetricotlp.UnimplementedGRPCServer
	Addr string

	grpc *grpc.Server
	mu   sync.Mutex
	reqs []pmetric.Metrics
	keys [][]string // each request's series
	at   []time.Time
}

// Start listens on addr ("127.0.0.1:0" for any port) until t ends. Like a
// Collector's OTLP receiver by default, it takes requests of up to 4 MiB
// (grpc.MaxRecvMsgSize changes that).
func Start(t testing.TB, addr string, opts ...grpc.ServerOption) *Server {
	t.Helper()
	s, err := Listen(addr, opts...)
	if err != nil {
		t.Fatalf("otlp listen: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Listen serves on addr until Stop.
func Listen(addr string, opts ...grpc.ServerOption) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), grpc: grpc.NewServer(opts...)}
	pmetricotlp.RegisterGRPCServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(ln) }()
	return s, nil
}

// Stop stops serving.
func (s *Server) Stop() { s.grpc.Stop() }

// Export keeps the request.
func (s *Server) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	m := pmetric.NewMetrics()
	req.Metrics().CopyTo(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, m)
	s.keys = append(s.keys, seriesKeys(m))
	s.at = append(s.at, time.Now())
	return pmetricotlp.NewExportResponse(), nil
}

// Forget drops the requests kept so far (a benchmark's receiver keeps
// nothing).
func (s *Server) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs, s.keys, s.at = nil, nil, nil
}

// Requests returns how many exports arrived, and when the last one did.
func (s *Server) Requests() (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return 0, time.Time{}
	}
	return len(s.reqs), s.at[len(s.at)-1]
}

// Latest returns the last collection received, or false: the last request
// with the requests just before it that carry none of its series, since
// the sidecar sends a large collection in parts (several requests).
func (s *Server) Latest() (pmetric.Metrics, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := len(s.reqs) - 1
	if last < 0 {
		return pmetric.Metrics{}, false
	}
	seen := map[string]bool{}
	first := last
	for i := last; i >= 0; i-- {
		if slices.ContainsFunc(s.keys[i], func(k string) bool { return seen[k] }) {
			break
		}
		for _, k := range s.keys[i] {
			seen[k] = true
		}
		first = i
	}
	if first == last {
		return s.reqs[last], true
	}
	merged := pmetric.NewMetrics()
	for _, req := range s.reqs[first:] {
		rms := req.ResourceMetrics()
		for j := 0; j < rms.Len(); j++ {
			rms.At(j).CopyTo(merged.ResourceMetrics().AppendEmpty())
		}
	}
	return merged, true
}

func seriesKeys(md pmetric.Metrics) []string {
	var keys []string
	for _, m := range Metrics(md) {
		dps, ok := numberPoints(m)
		if !ok {
			keys = append(keys, m.Name())
			continue
		}
		for p := 0; p < dps.Len(); p++ {
			keys = append(keys, SeriesKey(m.Name(), dps.At(p).Attributes()))
		}
	}
	return keys
}

// Metrics lists every metric in md.
func Metrics(md pmetric.Metrics) []pmetric.Metric {
	var out []pmetric.Metric
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				out = append(out, ms.At(k))
			}
		}
	}
	return out
}

// Values flattens md's number data points into "metric{k=v,...}" -> value,
// attributes sorted by key: easy to compare across front ends and tests.
func Values(md pmetric.Metrics) map[string]int64 {
	out := map[string]int64{}
	for _, m := range Metrics(md) {
		dps, ok := numberPoints(m)
		if !ok {
			continue
		}
		for p := 0; p < dps.Len(); p++ {
			dp := dps.At(p)
			v := dp.IntValue()
			if dp.ValueType() == pmetric.NumberDataPointValueTypeDouble {
				v = int64(dp.DoubleValue())
			}
			out[SeriesKey(m.Name(), dp.Attributes())] = v
		}
	}
	return out
}

// numberPoints returns the data points of a sum or a gauge.
func numberPoints(m pmetric.Metric) (pmetric.NumberDataPointSlice, bool) {
	switch m.Type() {
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints(), true
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints(), true
	}
	return pmetric.NumberDataPointSlice{}, false
}

// SeriesKey is a series' name and attributes as one string.
func SeriesKey(name string, attrs pcommon.Map) string {
	var kv []string
	attrs.Range(func(k string, v pcommon.Value) bool {
		kv = append(kv, k+"="+v.AsString())
		return true
	})
	sort.Strings(kv)
	return fmt.Sprintf("%s{%s}", name, strings.Join(kv, ","))
}

// Key builds the SeriesKey of a metric with the given "k=v" attributes.
func Key(name string, kv ...string) string {
	sort.Strings(kv)
	return fmt.Sprintf("%s{%s}", name, strings.Join(kv, ","))
}
