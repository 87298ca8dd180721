package table

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/internal/metrics"
)

func rm(points map[[4]string][2]int64) *metricdata.ResourceMetrics {
	var pk, by []metricdata.DataPoint[int64]
	for k, v := range points {
		kv := []attribute.KeyValue{metrics.AttrInterface.String(k[0]), metrics.AttrDirection.String(k[1])}
		if k[2] != "" {
			kv = append(kv, metrics.AttrNetworkType.String(k[2]), metrics.AttrTransport.String(k[3]))
		}
		set := attribute.NewSet(kv...)
		pk = append(pk, metricdata.DataPoint[int64]{Attributes: set, Value: v[0]})
		by = append(by, metricdata.DataPoint[int64]{Attributes: set, Value: v[1]})
	}
	return &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{
		{Name: metrics.Packets.Name, Data: metricdata.Sum[int64]{DataPoints: pk}},
		{Name: metrics.IO.Name, Data: metricdata.Sum[int64]{DataPoints: by}},
		{Name: metrics.InterfacesAttached.Name, Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Value: 2}}}},
	}}}}
}

// newAt returns an Exporter of a terminal that many columns wide.
func newAt(out *bytes.Buffer, cols int) *Exporter {
	e := New(out)
	e.width = func() int { return cols }
	return e
}

func TestTable(t *testing.T) {
	var out bytes.Buffer
	e := newAt(&out, 132)
	now := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }

	if err := e.Export(context.Background(), rm(nil)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2 interfaces attached") || !strings.Contains(out.String(), "(no traffic counted yet)") {
		t.Errorf("first table:\n%s", out.String())
	}

	out.Reset()
	now = now.Add(10 * time.Second)
	err := e.Export(context.Background(), rm(map[[4]string][2]int64{
		{"enp1s0", "receive", "ipv4", "tcp"}:  {100, 150000},
		{"enp1s0", "receive", "ipv6", "udp"}:  {20, 2000},
		{"enp1s0", "receive", "", ""}:         {3, 180},
		{"enp1s0", "transmit", "ipv4", "tcp"}: {50, 3300},
		{"veth1", "receive", "ipv4", "icmp"}:  {4, 392},
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"INTERFACE", "DIR", "PACKETS", "BYTES", "PKT/S", "BIT/S", "TCP4", "UDP4", "ICMP4", "OTHER4", "TCP6", "UDP6", "ICMP6", "OTHER6", "NON-IP"},
		{"enp1s0", "rx", "123", "148.6KiB", "12.3", "122k", "100", "0", "0", "0", "0", "20", "0", "0", "3"},
		{"enp1s0", "tx", "50", "3.2KiB", "5.0", "2.6k", "50", "0", "0", "0", "0", "0", "0", "0", "0"},
		{"veth1", "rx", "4", "392B", "0.4", "314", "0", "0", "4", "0", "0", "0", "0", "0", "0"},
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want)+2 || !strings.Contains(lines[0], "rates over the last 10s") ||
		!strings.Contains(lines[len(lines)-1], "(totals since attach; TCP4 ... NON-IP: packets by IP version and transport)") {
		t.Fatalf("table:\n%s", out.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d:\n got %v\nwant %v", i+1, got, w)
		}
	}
}

// One interface is "1 interface".
func TestTableSingular(t *testing.T) {
	var out bytes.Buffer
	one := &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{
		{Name: metrics.InterfacesAttached.Name, Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Value: 1}}}},
	}}}}
	if err := New(&out).Export(context.Background(), one); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "  1 interface attached") {
		t.Errorf("table:\n%s", out.String())
	}
}

// An attached interface that has counted nothing is listed (its error and
// drop series exist from attach on).
func TestTableListsIdleInterfaces(t *testing.T) {
	var out bytes.Buffer
	set := attribute.NewSet(metrics.AttrInterface.String("idle0"), metrics.AttrDirection.String("receive"))
	idle := &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{
		{Name: metrics.Errors.Name, Data: metricdata.Sum[int64]{DataPoints: []metricdata.DataPoint[int64]{{Attributes: set}}}},
		{Name: metrics.InterfacesAttached.Name, Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Value: 1}}}},
	}}}}
	if err := New(&out).Export(context.Background(), idle); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 3 || strings.Join(strings.Fields(lines[2]), " ") != "idle0 rx 0 0B - - 0 0 0 0 0" {
		t.Errorf("table:\n%s", out.String())
	}
}

// The first table after Baseline has rates; the final table, moments after
// the one before, shows the rates of the window before, not zeros.
func TestTableRatesAtStartAndEnd(t *testing.T) {
	var out bytes.Buffer
	e := New(&out)
	now := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }
	e.Baseline()
	if err := e.Export(context.Background(), rm(map[[4]string][2]int64{{"vt0", "receive", "ipv4", "udp"}: {0, 0}})); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("the baseline printed:\n%s", out.String())
	}
	now = now.Add(time.Second)
	if err := e.Export(context.Background(), rm(map[[4]string][2]int64{{"vt0", "receive", "ipv4", "udp"}: {10, 1000}})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "rates over the last 1s") || !strings.Contains(out.String(), " 10.0 ") {
		t.Errorf("first table:\n%s", out.String())
	}
	out.Reset()
	now = now.Add(9 * time.Second)
	if err := e.Export(context.Background(), rm(map[[4]string][2]int64{{"vt0", "receive", "ipv4", "udp"}: {100, 10000}})); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	now = now.Add(100 * time.Millisecond) // the final export, at shutdown
	if err := e.Export(context.Background(), rm(map[[4]string][2]int64{{"vt0", "receive", "ipv4", "udp"}: {100, 10000}})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "rates over the last 9s") || !strings.Contains(out.String(), " 9.9 ") {
		t.Errorf("final table:\n%s", out.String())
	}
}

// The table fits the terminal: 80 columns fold IPv4 and IPv6 together,
// fewer fold the rest, and long names and big numbers are cut to their
// column rather than widening it; every table's columns line up with the
// one before.
func TestTableFitsTheTerminal(t *testing.T) {
	traffic := func(scale int64) *metricdata.ResourceMetrics {
		return rm(map[[4]string][2]int64{
			{"veth3f2a1b9c", "receive", "ipv4", "tcp"}:     {1234567 * scale, 987654321 * scale},
			{"veth3f2a1b9c", "transmit", "ipv6", "udp"}:    {7 * scale, 700 * scale},
			{"a-very-long-nam", "receive", "ipv4", "icmp"}: {12 * scale, 1200 * scale},
			{"lo2", "receive", "", ""}:                     {1 * scale, 60 * scale},
			{"wg0", "transmit", "ipv4", "other"}:           {99999999 * scale, 99999999999 * scale},
		})
	}
	for _, tc := range []struct {
		cols   int
		heads  string
		legend string
	}{
		{132, "TCP4 UDP4 ICMP4 OTHER4 TCP6 UDP6 ICMP6 OTHER6 NON-IP", "by IP version"},
		{80, "TCP UDP ICMP OTHER NON-IP", "IPv4 and IPv6 together"},
		{72, "TCP UDP OTHER", "OTHER is the rest"},
		{50, "BIT/S", "wider for transports"},
	} {
		var out bytes.Buffer
		e := newAt(&out, tc.cols)
		now := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
		e.now = func() time.Time { return now }
		var headers []string
		for i, scale := range []int64{1, 1000} {
			out.Reset()
			now = now.Add(10 * time.Second)
			if err := e.Export(context.Background(), traffic(scale)); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			for _, line := range lines {
				if len(line) > tc.cols {
					t.Errorf("%d columns, a line of %d:\n%s", tc.cols, len(line), line)
				}
			}
			if !strings.HasSuffix(strings.Join(strings.Fields(lines[1]), " "), tc.heads) || !strings.Contains(lines[len(lines)-1], tc.legend) {
				t.Errorf("%d columns: header %q, legend %q", tc.cols, lines[1], lines[len(lines)-1])
			}
			headers = append(headers, lines[1])
			// Each value ends where its heading does.
			for _, line := range lines[2 : len(lines)-1] {
				if len(line) != len(lines[1]) {
					t.Errorf("%d columns, export %d: a row of %d against a header of %d:\n%s\n%s", tc.cols, i, len(line), len(lines[1]), lines[1], line)
				}
			}
		}
		if headers[0] != headers[1] {
			t.Errorf("%d columns: the header moved between tables:\n%s\n%s", tc.cols, headers[0], headers[1])
		}
	}
}
