//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	gnet "github.com/shirou/gopsutil/v4/net"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// fleet is a set of veth pairs "bc0000", "bc0001", ... whose peers live in
// another namespace, so this namespace's /proc/net/dev lists one line each.
type fleet struct {
	peers netns.NsHandle
	names []string
}

func newFleet() (*fleet, error) {
	ns, err := testenv.CreateNetns()
	return &fleet{peers: ns}, err
}

// grow adds pairs until there are n, each up.
func (f *fleet) grow(n int) error {
	for i := len(f.names); i < n; i++ {
		name := fmt.Sprintf("bc%04d", i)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: fmt.Sprintf("bp%04d", i), PeerNamespace: netlink.NsFd(f.peers)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add %s: %w", name, err)
		}
		f.names = append(f.names, name)
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		peer := fmt.Sprintf("bp%04d", i)
		if err := testenv.RunIn(f.peers, func() error {
			l, err := netlink.LinkByName(peer)
			if err != nil {
				return err
			}
			return netlink.LinkSetUp(l)
		}); err != nil {
			return err
		}
	}
	return nil
}

// classFrames are one frame of every class the program tells apart:
// non-IP, and IPv4 and IPv6 each with TCP, UDP, ICMP, another transport and
// a header too short to show one.
var classFrames = [][]byte{
	testenv.Cat(testenv.Eth(0x88b5), make([]byte, 46)),
	testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(6, 5, 20)),
	testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(17, 5, 8)),
	testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(1, 5, 8)),
	testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(132, 5, 12)),
	testenv.Cat(testenv.Eth(0x0800), make([]byte, 12)),
	testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(6, 20)),
	testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(17, 8)),
	testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(58, 8)),
	testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(132, 12)),
	testenv.Cat(testenv.Eth(0x86dd), make([]byte, 20)),
}

// send puts one frame of every class on every interface in both
// directions (transmitted from here, received from its peer), so that
// every interface has all its series: 22 per counter metric.
func (f *fleet) send() error {
	sendAll := func(prefix string) error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for i := range f.names {
			l, err := netlink.LinkByName(fmt.Sprintf("%s%04d", prefix, i))
			if err != nil {
				return err
			}
			for _, fr := range classFrames {
				if err := unix.Sendto(fd, fr, 0, &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6}); err != nil {
					return fmt.Errorf("send on %s: %w", l.Attrs().Name, err)
				}
			}
		}
		return nil
	}
	if err := sendAll("bc"); err != nil {
		return err
	}
	return testenv.RunIn(f.peers, func() error { return sendAll("bp") })
}

func (f *fleet) close() {
	for _, name := range f.names {
		if l, err := netlink.LinkByName(name); err == nil {
			_ = netlink.LinkDel(l)
		}
	}
	f.peers.Close()
}

// benchCollection times one collection (snapshot, and snapshot + SDK
// observe) for 10, 100 and 1000 interfaces beside reading the same
// interfaces from /proc/net/dev as the Collector's hostmetrics network
// scraper does (gopsutil net.IOCounters), and counts allocations.
func benchCollection() (string, error) {
	f, err := newFleet()
	if err != nil {
		return "", err
	}
	defer f.close()
	cfg := config.Default()
	cfg.Interfaces.Include = []string{"bc*"}
	cfg.MaxInterfaces = 1024
	d, err := datapath.Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", err
	}
	defer d.Close()

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader),
		sdkmetric.WithCardinalityLimit(metrics.CardinalityLimit(cfg.MaxInterfaces, metrics.Everything)))
	defer provider.Shutdown(context.Background())
	if _, err := metrics.Register(provider.Meter(metrics.ScopeName), d.Snapshot, metrics.Everything, nil); err != nil {
		return "", err
	}
	// The callback alone: snapshot and observe, into an observer that
	// keeps nothing, so the SDK's own aggregation is not counted.
	alone, err := metrics.NewCallback(provider.Meter("bench"), d.Snapshot, metrics.Everything)
	if err != nil {
		return "", err
	}

	type row struct {
		n, points                    int
		snap, observe, collect, proc testing.BenchmarkResult
	}
	var rows []row
	for _, n := range []int{10, 100, 1000} {
		if err := f.grow(n); err != nil {
			return "", err
		}
		if err := waitAttached(d, n); err != nil {
			return "", err
		}
		if err := f.send(); err != nil {
			return "", err
		}
		var rm metricdata.ResourceMetrics
		var s snapshot.Snapshot
		r := row{n: n}
		r.snap = testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Snapshot(&s); err != nil {
					b.Fatal(err)
				}
			}
		})
		r.observe = testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := alone.Observe(context.Background(), discard{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		r.collect = testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := reader.Collect(context.Background(), &rm); err != nil {
					b.Fatal(err)
				}
			}
		})
		r.points = countPoints(&rm)
		r.proc = testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := gnet.IOCounters(true); err != nil {
					b.Fatal(err)
				}
			}
		})
		rows = append(rows, r)
	}

	var b strings.Builder
	b.WriteString("One collection in steady state, timed with testing.Benchmark. \"snapshot\" reads every attached interface's counters " +
		"(one batch syscall) and the kernel's error and drop counters (one RTM_GETSTATS dump); \"snapshot + observe\" is ebpfnet's callback: the snapshot and one Observe per data point with cached attribute sets, " +
		"into an observer that keeps nothing; \"SDK collection\" is a whole ManualReader.Collect through the OTel Go SDK, its aggregation and " +
		"metricdata included; \"/proc/net/dev\" is gopsutil net.IOCounters(pernic), what the Collector's hostmetrics network scraper reads, " +
		"over the same interfaces. Each interface carries every class in both directions, and its errors and drops: 48 data points (22 series each of bytes and packets, 2 each of errors and drops).\n\n")
	b.WriteString("| interfaces | data points | snapshot | snapshot + observe | SDK collection | /proc/net/dev (gopsutil) | (snapshot + observe) / proc | allocs: snapshot + observe | allocs: SDK collection | allocs: proc |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %s | %.2fx | %d | %d | %d |\n", r.n, r.points,
			dur(r.snap.NsPerOp()), dur(r.observe.NsPerOp()), dur(r.collect.NsPerOp()), dur(r.proc.NsPerOp()),
			float64(r.observe.NsPerOp())/float64(r.proc.NsPerOp()),
			r.observe.AllocsPerOp(), r.collect.AllocsPerOp(), r.proc.AllocsPerOp())
	}
	first, last := rows[0], rows[len(rows)-1]
	slope := func(a, z testing.BenchmarkResult) float64 {
		return float64(z.AllocsPerOp()-a.AllocsPerOp()) / float64(last.points-first.points)
	}
	fmt.Fprintf(&b, "\nAllocations per data point in steady state (slope from %d to %d points): snapshot %.3f, snapshot + observe %.3f, SDK collection %.3f.\n",
		first.points, last.points, slope(first.snap, last.snap), slope(first.observe, last.observe), slope(first.collect, last.collect))
	b.WriteString("Targets (issue 3): collection (snapshot + observe) for 1000 interfaces at most 2 ms and no slower than /proc/net/dev; 0 allocations per data point.\n")
	return b.String(), nil
}

// discard is an Observer that keeps nothing.
type discard struct{ embedded.Observer }

func (discard) ObserveFloat64(metric.Float64Observable, float64, ...metric.ObserveOption) {}
func (discard) ObserveInt64(metric.Int64Observable, int64, ...metric.ObserveOption)       {}

func waitAttached(d *datapath.Datapath, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	var s snapshot.Snapshot
	for time.Now().Before(deadline) {
		if err := d.Snapshot(&s); err != nil {
			return err
		}
		if len(s.Interfaces) == n {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%d of %d interfaces attached", len(s.Interfaces), n)
}

func countPoints(rm *metricdata.ResourceMetrics) int {
	n := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case metrics.IO.Name, metrics.Packets.Name, metrics.Errors.Name, metrics.Dropped.Name:
			default:
				continue
			}
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				n += len(s.DataPoints)
			}
		}
	}
	return n
}

func dur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(ns)/1e3)
	}
	return fmt.Sprintf("%.2f ms", float64(ns)/1e6)
}
