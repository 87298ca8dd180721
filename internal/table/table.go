// Package table is the sidecar's embedded default exporter: a readable
// per-interface table in the terminal at every export, so a new user sees
// traffic within seconds without any Collector. It is an OTel SDK exporter,
// so it shows exactly the data points an OTLP exporter would send.
package table

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpfnet/ebpfnet/internal/metrics"
)

// Exporter writes a table per export.
type Exporter struct {
	w   io.Writer
	now func() time.Time

	mu   sync.Mutex
	last map[row]totals
	at   time.Time
}

// New returns an Exporter writing to w.
func New(w io.Writer) *Exporter {
	return &Exporter{w: w, now: time.Now}
}

type row struct{ iface, direction string }

type totals struct {
	packets, bytes uint64
	byTransport    map[string]uint64 // packets
}

// Columns of packets by transport, in order; "" is non-IP or unknown.
var transports = []string{"tcp", "udp", "icmp", "other"}

// Temporality is cumulative: the table shows totals since counting began.
func (e *Exporter) Temporality(sdkmetric.InstrumentKind) metricdata.Temporality {
	return metricdata.CumulativeTemporality
}

// Aggregation is the SDK's default.
func (e *Exporter) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}

// Export prints one table: totals per interface and direction, packets by
// transport, and rates since the previous table.
func (e *Exporter) Export(_ context.Context, rm *metricdata.ResourceMetrics) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	cur := map[row]totals{}
	attached := int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case metrics.Packets.Name, metrics.IO.Name:
				sum, ok := m.Data.(metricdata.Sum[int64])
				if !ok {
					continue
				}
				for _, p := range sum.DataPoints {
					r := row{value(p.Attributes, metrics.AttrInterface), value(p.Attributes, metrics.AttrDirection)}
					t := cur[r]
					if t.byTransport == nil {
						t.byTransport = map[string]uint64{}
					}
					if m.Name == metrics.IO.Name {
						t.bytes += uint64(p.Value)
					} else {
						t.packets += uint64(p.Value)
						t.byTransport[value(p.Attributes, metrics.AttrTransport)] += uint64(p.Value)
					}
					cur[r] = t
				}
			case metrics.InterfacesAttached.Name:
				if g, ok := m.Data.(metricdata.Gauge[int64]); ok && len(g.DataPoints) > 0 {
					attached = g.DataPoints[0].Value
				}
			}
		}
	}

	rows := make([]row, 0, len(cur))
	for r := range cur {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b row) int {
		if a.iface != b.iface {
			if a.iface < b.iface {
				return -1
			}
			return 1
		}
		if a.direction < b.direction {
			return -1
		}
		if a.direction > b.direction {
			return 1
		}
		return 0
	})

	elapsed := now.Sub(e.at).Seconds()
	head := fmt.Sprintf("ebpfnet %s", now.Format("2006-01-02 15:04:05"))
	if attached >= 0 {
		noun := "interfaces"
		if attached == 1 {
			noun = "interface"
		}
		head += fmt.Sprintf("  %d %s attached", attached, noun)
	}
	if e.last != nil {
		head += fmt.Sprintf("  rates over the last %.0fs", elapsed)
	}
	fmt.Fprintln(e.w, head)
	tw := tabwriter.NewWriter(e.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERFACE\tDIRECTION\tPACKETS\tBYTES\tPACKETS/S\tBITS/S\tTCP\tUDP\tICMP\tOTHER\tNON-IP\t")
	for _, r := range rows {
		t := cur[r]
		pps, bps := "-", "-"
		// A row new since the last table counted from zero.
		if prev := e.last[r]; e.last != nil && elapsed > 0 {
			pps = fmt.Sprintf("%.1f", float64(t.packets-prev.packets)/elapsed)
			bps = human(float64(t.bytes-prev.bytes)*8/elapsed, 1000, "bit/s")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t", r.iface, r.direction, t.packets, human(float64(t.bytes), 1024, "B"), pps, bps)
		for _, tr := range transports {
			fmt.Fprintf(tw, "%d\t", t.byTransport[tr])
		}
		fmt.Fprintf(tw, "%d\t\n", t.byTransport[""])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintln(e.w, "(no traffic counted yet)")
	}
	fmt.Fprintln(e.w)
	e.last, e.at = cur, now
	return nil
}

// ForceFlush does nothing: every Export is written at once.
func (e *Exporter) ForceFlush(context.Context) error { return nil }

// Shutdown does nothing.
func (e *Exporter) Shutdown(context.Context) error { return nil }

func value(s attribute.Set, k attribute.Key) string {
	v, _ := s.Value(k)
	return v.AsString()
}

// human formats v with binary (1024) or decimal (1000) prefixes.
func human(v float64, base float64, unit string) string {
	prefixes := []string{"", "k", "M", "G", "T", "P"}
	if base == 1024 {
		prefixes = []string{"", "Ki", "Mi", "Gi", "Ti", "Pi"}
	}
	i := 0
	for v >= base && i < len(prefixes)-1 {
		v /= base
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", v, unit)
	}
	return fmt.Sprintf("%.1f%s%s", v, prefixes[i], unit)
}
