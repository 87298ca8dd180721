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
	"strings"
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

	mu         sync.Mutex
	silentNext bool
	// The last two exports' totals, for rates: the final table at
	// shutdown comes moments after the previous one, and takes its rates
	// over the window before.
	last, before export
}

type export struct {
	rows map[row]totals
	at   time.Time
}

// New returns an Exporter writing to w.
func New(w io.Writer) *Exporter {
	return &Exporter{w: w, now: time.Now}
}

// Baseline makes the next export record totals without printing them, so
// that the first table printed has rates.
func (e *Exporter) Baseline() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.silentNext = true
}

type row struct{ iface, direction string }

type totals struct {
	packets, bytes uint64
	byClass        map[class]uint64 // packets
}

type class struct{ network, transport string }

// Columns of packets by IP version and transport, in order, then non-IP.
// IP packets too short to show their transport count as other.
var columns = []struct {
	head string
	class
}{
	{"TCP4", class{"ipv4", "tcp"}}, {"UDP4", class{"ipv4", "udp"}}, {"ICMP4", class{"ipv4", "icmp"}}, {"OTHER4", class{"ipv4", "other"}},
	{"TCP6", class{"ipv6", "tcp"}}, {"UDP6", class{"ipv6", "udp"}}, {"ICMP6", class{"ipv6", "icmp"}}, {"OTHER6", class{"ipv6", "other"}},
	{"NON-IP", class{}},
}

// minWindow is the shortest window rates are taken over; a table sooner
// than that after the previous one (the final one) takes its rates over
// the window before.
const minWindow = time.Second

// Temporality is cumulative: the table shows totals since counting began.
func (e *Exporter) Temporality(sdkmetric.InstrumentKind) metricdata.Temporality {
	return metricdata.CumulativeTemporality
}

// Aggregation is the SDK's default.
func (e *Exporter) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}

// Export prints one table: totals per interface and direction, packets by
// IP version and transport, and rates since the previous table. Attached
// interfaces that have counted nothing are listed too (their error and
// drop series exist from attach on).
func (e *Exporter) Export(_ context.Context, rm *metricdata.ResourceMetrics) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	cur := map[row]totals{}
	attached := int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case metrics.Packets.Name, metrics.IO.Name, metrics.Errors.Name:
				sum, ok := m.Data.(metricdata.Sum[int64])
				if !ok {
					continue
				}
				for _, p := range sum.DataPoints {
					r := row{value(p.Attributes, metrics.AttrInterface), value(p.Attributes, metrics.AttrDirection)}
					t := cur[r]
					if t.byClass == nil {
						t.byClass = map[class]uint64{}
					}
					switch m.Name {
					case metrics.IO.Name:
						t.bytes += uint64(p.Value)
					case metrics.Packets.Name:
						t.packets += uint64(p.Value)
						c := class{value(p.Attributes, metrics.AttrNetworkType), value(p.Attributes, metrics.AttrTransport)}
						if c.network != "" && c.transport == "" {
							c.transport = "other"
						}
						t.byClass[c] += uint64(p.Value)
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
	if e.silentNext {
		e.silentNext = false
		e.before, e.last = e.last, export{cur, now}
		return nil
	}

	rows := make([]row, 0, len(cur))
	for r := range cur {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := strings.Compare(a.iface, b.iface); c != 0 {
			return c
		}
		return strings.Compare(a.direction, b.direction)
	})

	base := e.last
	if now.Sub(base.at) < minWindow && e.before.rows != nil {
		base = e.before
	}
	window := now.Sub(base.at).Seconds()
	head := fmt.Sprintf("ebpfnet %s", now.Format("2006-01-02 15:04:05"))
	if attached >= 0 {
		noun := "interfaces"
		if attached == 1 {
			noun = "interface"
		}
		head += fmt.Sprintf("  %d %s attached", attached, noun)
	}
	if base.rows != nil {
		head += fmt.Sprintf("  rates over the last %.0fs", window)
	}
	fmt.Fprintln(e.w, head)
	tw := tabwriter.NewWriter(e.w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "INTERFACE\tDIRECTION\tPACKETS\tBYTES\tPACKETS/S\tBITS/S\t")
	for _, c := range columns {
		fmt.Fprintf(tw, "%s\t", c.head)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		t := cur[r]
		pps, bps := "-", "-"
		// A row new since the base table counted from zero.
		if prev := base.rows[r]; base.rows != nil && window > 0 {
			pps = fmt.Sprintf("%.1f", float64(t.packets-prev.packets)/window)
			bps = human(float64(t.bytes-prev.bytes)*8/window, 1000, "bit/s")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t", r.iface, r.direction, t.packets, human(float64(t.bytes), 1024, "B"), pps, bps)
		for _, c := range columns {
			fmt.Fprintf(tw, "%d\t", t.byClass[c.class])
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case attached == 0:
		fmt.Fprintln(e.w, "(no interface attached yet)")
	case len(rows) == 0:
		fmt.Fprintln(e.w, "(no traffic counted yet)")
	default:
		fmt.Fprintln(e.w, "(TCP4 ... NON-IP: packets by IP version and transport)")
	}
	fmt.Fprintln(e.w)
	e.before, e.last = e.last, export{cur, now}
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
