// Package table is the sidecar's embedded default exporter: a readable
// per-interface table in the terminal at every export, so a new user sees
// traffic within seconds without any Collector. It is an OTel SDK exporter,
// so it shows exactly the data points an OTLP exporter would send.
package table

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/metrics"
)

// Exporter writes a table per export.
type Exporter struct {
	w     io.Writer
	now   func() time.Time
	width func() int // the terminal's columns

	mu         sync.Mutex
	silentNext bool
	nameWidth  int // grows with the longest name seen, never shrinks
	// The last two exports' totals, for rates: the final table at
	// shutdown comes moments after the previous one, and takes its rates
	// over the window before.
	last, before export
}

type export struct {
	rows map[row]totals
	at   time.Time
}

// New returns an Exporter writing to w, as wide as w's terminal, or 80
// columns when w is not a terminal (COLUMNS, where set, says otherwise).
func New(w io.Writer) *Exporter {
	return &Exporter{w: w, now: time.Now, width: func() int { return columns(w) }, nameWidth: minNameWidth}
}

// columns is the width of the terminal w writes to, or 80.
func columns(w io.Writer) int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	if f, ok := w.(interface{ Fd() uintptr }); ok { // an *os.File, or a writer that wraps one
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return int(ws.Col)
		}
	}
	return 80
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

// A layout is the class columns a table has room for: by IP version and
// transport where the terminal is wide, else folded (IPv4 and IPv6
// together, then ICMP and non-IP into OTHER), else none.
type layout struct {
	columns []column
	legend  string
}

type column struct {
	head    string
	classes []class // summed
}

var (
	v4, v6   = "ipv4", "ipv6"
	separate = layout{legend: "TCP4 ... NON-IP: packets by IP version and transport", columns: []column{
		{"TCP4", []class{{v4, "tcp"}}}, {"UDP4", []class{{v4, "udp"}}}, {"ICMP4", []class{{v4, "icmp"}}}, {"OTHER4", []class{{v4, "other"}}},
		{"TCP6", []class{{v6, "tcp"}}}, {"UDP6", []class{{v6, "udp"}}}, {"ICMP6", []class{{v6, "icmp"}}}, {"OTHER6", []class{{v6, "other"}}},
		{"NON-IP", []class{{}}},
	}}
	folded = layout{legend: "TCP ... NON-IP: packets, IPv4 and IPv6 together", columns: []column{
		{"TCP", []class{{v4, "tcp"}, {v6, "tcp"}}}, {"UDP", []class{{v4, "udp"}, {v6, "udp"}}},
		{"ICMP", []class{{v4, "icmp"}, {v6, "icmp"}}}, {"OTHER", []class{{v4, "other"}, {v6, "other"}}},
		{"NON-IP", []class{{}}},
	}}
	narrow = layout{legend: "TCP UDP OTHER: packets; OTHER is the rest", columns: []column{
		{"TCP", []class{{v4, "tcp"}, {v6, "tcp"}}}, {"UDP", []class{{v4, "udp"}, {v6, "udp"}}},
		{"OTHER", []class{{v4, "icmp"}, {v6, "icmp"}, {v4, "other"}, {v6, "other"}, {}}},
	}}
	bare = layout{legend: "wider for transports"}
)

// Column widths, fixed so that a table lines up with the one before it;
// numbers too long for them are abbreviated (12.3k, 4.5M).
const (
	dirWidth     = 3 // rx, tx
	packetsWidth = 7
	bytesWidth   = 8
	rateWidth    = 5
	classWidth   = 5  // at least: a heading longer than this widens its column
	minNameWidth = 9  // INTERFACE
	maxNameWidth = 15 // IFNAMSIZ - 1
)

// width of a table with these class columns and interface names.
func (l layout) width(name int) int {
	w := name + 1 + dirWidth + 1 + packetsWidth + 1 + bytesWidth + 1 + rateWidth + 1 + rateWidth
	for _, c := range l.columns {
		w += 1 + c.width()
	}
	return w
}

func (c column) width() int { return max(classWidth, len(c.head)) }

// layoutFor is the widest layout that fits cols.
func layoutFor(cols, name int) layout {
	for _, l := range []layout{separate, folded, narrow} {
		if l.width(name) <= cols {
			return l
		}
	}
	return bare
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
	// The title, as much of it as fits.
	cols := e.width()
	head := "ebpfnet " + now.Format("15:04:05")
	var more []string
	if attached >= 0 {
		noun := "interfaces"
		if attached == 1 {
			noun = "interface"
		}
		more = append(more, fmt.Sprintf("  %d %s attached", attached, noun))
	}
	if base.rows != nil {
		more = append(more, fmt.Sprintf("  rates over the last %.0fs", window))
	}
	for _, m := range more {
		if len(head)+len(m) <= cols {
			head += m
		}
	}
	fmt.Fprintln(e.w, head)

	for _, r := range rows {
		e.nameWidth = min(max(e.nameWidth, len(r.iface)), maxNameWidth)
	}
	l := layoutFor(cols, e.nameWidth)
	var b strings.Builder
	line := func(name, dir, packets, bytes, pps, bps string, classes []string) {
		b.Reset()
		fmt.Fprintf(&b, "%-*s %-*s %*s %*s %*s %*s", e.nameWidth, name, dirWidth, dir, packetsWidth, packets, bytesWidth, bytes, rateWidth, pps, rateWidth, bps)
		for i, c := range classes {
			fmt.Fprintf(&b, " %*s", l.columns[i].width(), c)
		}
		fmt.Fprintln(e.w, strings.TrimRight(b.String(), " "))
	}
	heads := make([]string, len(l.columns))
	for i, c := range l.columns {
		heads[i] = c.head
	}
	line("INTERFACE", "DIR", "PACKETS", "BYTES", "PKT/S", "BIT/S", heads)
	for _, r := range rows {
		t := cur[r]
		pps, bps := "-", "-"
		// A row new since the base table counted from zero.
		if prev := base.rows[r]; base.rows != nil && window > 0 {
			pps = fit(float64(t.packets-prev.packets)/window, rateWidth, 1)
			bps = human(float64(t.bytes-prev.bytes)*8/window, 1000, "", rateWidth)
		}
		classes := make([]string, len(l.columns))
		for i, c := range l.columns {
			var n uint64
			for _, k := range c.classes {
				n += t.byClass[k]
			}
			classes[i] = fit(float64(n), c.width(), 0)
		}
		name := r.iface
		if len(name) > e.nameWidth {
			name = name[:e.nameWidth-1] + "~"
		}
		line(name, short[r.direction], fit(float64(t.packets), packetsWidth, 0), human(float64(t.bytes), 1024, "B", bytesWidth), pps, bps, classes)
	}
	switch {
	case attached == 0:
		fmt.Fprintln(e.w, "(no interface attached yet)")
	case len(rows) == 0:
		fmt.Fprintln(e.w, "(no traffic counted yet)")
	default:
		fmt.Fprintf(e.w, "(totals since attach; %s)\n", l.legend)
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

// short names the directions in a column three wide.
var short = map[string]string{"receive": "rx", "transmit": "tx"}

// fit writes v in at most width characters: whole (or with decimals where
// they fit), else with a decimal prefix (12.3k, 4.5M).
func fit(v float64, width, decimals int) string {
	if s := strconv.FormatFloat(v, 'f', decimals, 64); len(s) <= width {
		return s
	}
	return human(v, 1000, "", width)
}

// human writes v with binary (1024) or decimal (1000) prefixes, in at most
// width characters where it can.
func human(v float64, base float64, unit string, width int) string {
	prefixes := []string{"", "k", "M", "G", "T", "P", "E"}
	if base == 1024 {
		prefixes = []string{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	}
	i := 0
	for v >= base && i < len(prefixes)-1 {
		v /= base
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", v, unit)
	}
	if s := fmt.Sprintf("%.1f%s%s", v, prefixes[i], unit); len(s) <= width {
		return s
	}
	return fmt.Sprintf("%.0f%s%s", v, prefixes[i], unit)
}
