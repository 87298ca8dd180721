package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// ScopeName is the instrumentation scope of the sidecar's metrics: this
// package's import path.
const ScopeName = "github.com/ebpfnet/ebpfnet/internal/metrics"

// Source fills a snapshot: datapath.(*Datapath).Snapshot, or a fixed one in
// tests.
type Source func(*snapshot.Snapshot) error

// Register creates the contract's instruments on meter and one callback that
// takes one snapshot per collection and observes it. Attribute sets are
// built once per series and reused, so a collection in steady state
// allocates nothing per data point. onPanic, if set, is called before a
// panic in the callback goes on (the SDK runs it in a goroutine of its own).
func Register(meter metric.Meter, src Source, sel Selection, onPanic func()) (metric.Registration, error) {
	c, err := NewCallback(meter, src, sel)
	if err != nil {
		return nil, err
	}
	c.onPanic = onPanic
	var observed []metric.Observable
	for _, i := range []metric.Observable{c.io, c.packets, c.netErrors, c.netDropped, c.podIO, c.podPackets, c.podErrors, c.podDropped, c.attached, c.errors, c.restored} {
		if i != nil {
			observed = append(observed, i)
		}
	}
	return meter.RegisterCallback(c.Observe, observed...)
}

// NewCallback creates the instruments sel asks for on meter (the others
// are nil); its Observe is the callback Register registers. It is exported
// for the benchmarks, which time Observe on its own.
func NewCallback(meter metric.Meter, src Source, sel Selection) (*Callback, error) {
	c := &Callback{src: src, split: sel.Split, series: map[string]*seriesOptions{}, errOpts: map[string][]metric.ObserveOption{}}
	var errs []error
	counter := func(def Definition) metric.Int64ObservableCounter {
		if !sel.On(def) {
			return nil
		}
		i, err := meter.Int64ObservableCounter(def.Name, metric.WithUnit(def.Unit), metric.WithDescription(def.Description))
		errs = append(errs, err)
		return i
	}
	c.io, c.packets, c.netErrors, c.netDropped = counter(IO), counter(Packets), counter(Errors), counter(Dropped)
	c.podIO, c.podPackets, c.podErrors, c.podDropped = counter(PodIO), counter(PodPackets), counter(PodErrors), counter(PodDropped)
	c.errors, c.restored = counter(AttachErrors), counter(HooksRestored)
	var err error
	if sel.On(InterfacesAttached) {
		c.attached, err = meter.Int64ObservableGauge(InterfacesAttached.Name, metric.WithUnit(InterfacesAttached.Unit), metric.WithDescription(InterfacesAttached.Description))
		errs = append(errs, err)
	}
	if sel.On(CollectionDuration) {
		c.duration, err = meter.Float64Gauge(CollectionDuration.Name, metric.WithUnit(CollectionDuration.Unit), metric.WithDescription(CollectionDuration.Description))
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// observe observes v on i, where i is made.
func observe(o metric.Observer, i metric.Int64Observable, v uint64, opts []metric.ObserveOption) {
	if i != nil {
		o.ObserveInt64(i, int64(v), opts...)
	}
}

// Callback observes one snapshot per collection.
//
// The SDK calls a registered callback once per reader, each reader from
// its own goroutine (a periodic OTLP export and a Prometheus scrape at
// once, say). Observe takes one collection at a time, each with a snapshot
// of its own: the attribute sets it reuses across collections are shared
// state, and reading a snapshot is serialised anyway (one netlink socket,
// one batch buffer). A collection is short next to an export, so a second
// reader waits little.
type Callback struct {
	src                                      Source
	split                                    Split
	io, packets, netErrors, netDropped       metric.Int64ObservableCounter
	podIO, podPackets, podErrors, podDropped metric.Int64ObservableCounter
	errors, restored                         metric.Int64ObservableCounter
	attached                                 metric.Int64ObservableGauge
	duration                                 metric.Float64Gauge

	onPanic func()

	mu      sync.Mutex // one collection at a time; guards what follows
	snap    snapshot.Snapshot
	gen     uint64
	series  map[string]*seriesOptions // by interface name
	errOpts map[string][]metric.ObserveOption
}

// seriesOptions are one interface's attribute sets, made when a series
// first has data: the interface's own, and its pod's.
type seriesOptions struct {
	gen       uint64 // the last collection that saw the interface
	pod       pods.Pod
	opts      [bpf.NumDirections][bpf.NumClasses][]metric.ObserveOption
	kernel    [bpf.NumDirections][]metric.ObserveOption // errors and drops
	podOpts   [bpf.NumDirections][bpf.NumClasses][]metric.ObserveOption
	podKernel [bpf.NumDirections][]metric.ObserveOption
}

// seriesOf returns the interface's attribute sets, marked as seen in this
// collection; new ones when the interface is now another pod's.
func (c *Callback) seriesOf(i *snapshot.Interface) *seriesOptions {
	var pod pods.Pod
	if i.Pod != nil {
		pod = *i.Pod
	}
	s := c.series[i.Name]
	if s == nil || s.pod != pod {
		s = &seriesOptions{pod: pod}
		c.series[i.Name] = s
	}
	s.gen = c.gen
	return s
}

// set returns the cached options at *slot, made by attrs the first time.
func set(slot *[]metric.ObserveOption, attrs func() []attribute.KeyValue) []metric.ObserveOption {
	if *slot == nil {
		*slot = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(attrs()...))}
	}
	return *slot
}

// Observe takes a snapshot and observes every series in it.
func (c *Callback) Observe(ctx context.Context, o metric.Observer) error {
	defer func() {
		if r := recover(); r != nil {
			if c.onPanic != nil {
				c.onPanic()
			}
			panic(r)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	if err := c.src(&c.snap); err != nil {
		return err
	}
	c.gen++
	// Each and EachKernel visit an interface's series one after another:
	// its attribute sets are looked up once per interface, not per point.
	var (
		last *snapshot.Interface
		s    *seriesOptions
	)
	seriesOf := func(i *snapshot.Interface) *seriesOptions {
		if i != last {
			last, s = i, c.seriesOf(i)
		}
		return s
	}
	Each(&c.snap, c.split, func(i *snapshot.Interface, d bpf.Direction, b int, n bpf.Count) {
		s := seriesOf(i)
		opts := set(&s.opts[d][b], func() []attribute.KeyValue { return Attributes(i.Name, d, c.split.Bucket(b), i.Pod) })
		observe(o, c.packets, n.Packets, opts)
		observe(o, c.io, n.Bytes, opts)
		if i.Pod != nil {
			pd := PodDirection(d)
			opts := set(&s.podOpts[pd][b], func() []attribute.KeyValue { return Attributes(i.Pod.Interface, pd, c.split.Bucket(b), i.Pod) })
			observe(o, c.podPackets, n.Packets, opts)
			observe(o, c.podIO, n.Bytes, opts)
		}
	})
	EachKernel(&c.snap, func(i *snapshot.Interface, d bpf.Direction, k snapshot.KernelStats) {
		s := seriesOf(i)
		opts := set(&s.kernel[d], func() []attribute.KeyValue { return KernelAttributes(i.Name, d, i.Pod) })
		observe(o, c.netErrors, k.Errors, opts)
		observe(o, c.netDropped, k.Dropped, opts)
		if i.Pod != nil {
			pd := PodDirection(d)
			opts := set(&s.podKernel[pd], func() []attribute.KeyValue { return KernelAttributes(i.Pod.Interface, pd, i.Pod) })
			observe(o, c.podErrors, k.Errors, opts)
			observe(o, c.podDropped, k.Dropped, opts)
		}
	})
	// Forget interfaces that are gone, so churn does not grow the cache.
	for name, s := range c.series {
		if s.gen != c.gen {
			delete(c.series, name)
		}
	}

	if c.attached != nil {
		o.ObserveInt64(c.attached, int64(c.snap.Counting()))
	}
	observe(o, c.restored, c.snap.HooksRestored, nil)
	for typ, n := range c.snap.AttachErrors {
		opts := c.errOpts[typ]
		if opts == nil {
			opts = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(AttrErrorType.String(typ)))}
			c.errOpts[typ] = opts
		}
		observe(o, c.errors, n, opts)
	}
	if c.duration != nil {
		c.duration.Record(ctx, time.Since(start).Seconds())
	}
	return nil
}

// CardinalityLimit is the SDK cardinality limit that keeps every series of
// maxInterfaces interfaces: each can carry every bucket in both directions,
// and the SDK keeps one series for its overflow. (The SDK's default, 2000,
// folds interfaces beyond about 90 with every class into one overflow
// series.)
func CardinalityLimit(maxInterfaces int, sel Selection) int {
	return maxInterfaces*bpf.NumDirections*sel.Split.Len() + 1
}
