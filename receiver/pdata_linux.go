package receiver

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/version"
)

// ScopeName is the instrumentation scope of the receiver's metrics.
const ScopeName = "github.com/ebpfnet/ebpfnet/receiver"

// toMetrics turns a snapshot into pdata with the definitions the sidecar
// uses (internal/metrics): the same names, units, descriptions, attributes
// and series. Each counter's start timestamp is when counting began on its
// interface: attach time, or the time kept with pinned state; the
// receiver's own counters start at started, the receiver's start.
func toMetrics(s *snapshot.Snapshot, sel metrics.Selection, started time.Time, now pcommon.Timestamp, took time.Duration) pmetric.Metrics {
	md := pmetric.NewMetrics()
	// No resource attributes: as with other Collector receivers, identity
	// (host.name, host.id, service.*) is the resourcedetection and
	// resource processors' job (examples/otelcol/agent.yaml).
	rm := md.ResourceMetrics().AppendEmpty()
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(ScopeName)
	sm.Scope().SetVersion(version.Get())

	bytes := newSum(sm, sel, metrics.IO)
	packets := newSum(sm, sel, metrics.Packets)
	netErrors := newSum(sm, sel, metrics.Errors)
	netDropped := newSum(sm, sel, metrics.Dropped)
	// Each pod's own view of its traffic goes in a Resource of its own,
	// named by k8s.pod.uid, k8s.pod.name and k8s.namespace.name, as the
	// semantic conventions and the k8sattributes processor have it.
	pods := podResources{md: md, sel: sel}
	metrics.Each(s, sel.Split, func(i *snapshot.Interface, d bpf.Direction, b int, n bpf.Count) {
		attrs := metrics.Attributes(i.Name, d, sel.Split.Bucket(b), i.Pod)
		addPoint(bytes, i, now, n.Bytes, attrs)
		addPoint(packets, i, now, n.Packets, attrs)
		if i.Pod != nil {
			p, pd := pods.of(i.Pod), metrics.PodDirection(d)
			attrs := metrics.Attributes(i.Pod.Interface, pd, sel.Split.Bucket(b), nil)
			addPoint(p.bytes, i, now, n.Bytes, attrs)
			addPoint(p.packets, i, now, n.Packets, attrs)
		}
	})
	metrics.EachKernel(s, func(i *snapshot.Interface, d bpf.Direction, k snapshot.KernelStats) {
		attrs := metrics.KernelAttributes(i.Name, d, i.Pod)
		addPoint(netErrors, i, now, k.Errors, attrs)
		addPoint(netDropped, i, now, k.Dropped, attrs)
		if i.Pod != nil {
			p, pd := pods.of(i.Pod), metrics.PodDirection(d)
			attrs := metrics.KernelAttributes(i.Pod.Interface, pd, nil)
			addPoint(p.errors, i, now, k.Errors, attrs)
			addPoint(p.dropped, i, now, k.Dropped, attrs)
		}
	})

	if sel.On(metrics.InterfacesAttached) {
		attached := newMetric(sm, metrics.InterfacesAttached).SetEmptyGauge().DataPoints().AppendEmpty()
		attached.SetTimestamp(now)
		attached.SetIntValue(int64(s.Counting()))
	}
	if errs := newSum(sm, sel, metrics.AttachErrors); errs != nil {
		for typ, n := range s.AttachErrors {
			dp := errs.AppendEmpty()
			dp.SetStartTimestamp(pcommon.NewTimestampFromTime(started))
			dp.SetTimestamp(now)
			dp.SetIntValue(int64(n))
			dp.Attributes().PutStr(string(metrics.AttrErrorType), typ)
		}
	}
	if restored := newSum(sm, sel, metrics.HooksRestored); restored != nil {
		dp := restored.AppendEmpty()
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(started))
		dp.SetTimestamp(now)
		dp.SetIntValue(int64(s.HooksRestored))
	}
	if sel.On(metrics.CollectionDuration) {
		dur := newMetric(sm, metrics.CollectionDuration).SetEmptyGauge().DataPoints().AppendEmpty()
		dur.SetTimestamp(now)
		dur.SetDoubleValue(took.Seconds())
	}
	// A metric without points is dropped by every backend, and logged by
	// some (Prometheus, on every push).
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		md.ResourceMetrics().At(i).ScopeMetrics().At(0).Metrics().RemoveIf(func(m pmetric.Metric) bool { return dataPoints(m) == 0 })
	}
	return md
}

// podResources are the Resources of the pods in a snapshot, by UID.
type podResources struct {
	md  pmetric.Metrics
	sel metrics.Selection
	uid map[string]*podSums
}

type podSums struct{ bytes, packets, errors, dropped *pmetric.NumberDataPointSlice }

// of returns the pod's Resource's sums, made the first time.
func (r *podResources) of(p *pods.Pod) *podSums {
	if s := r.uid[p.UID]; s != nil {
		return s
	}
	rm := r.md.ResourceMetrics().AppendEmpty()
	for _, kv := range metrics.PodAttributes(p) {
		rm.Resource().Attributes().PutStr(string(kv.Key), kv.Value.AsString())
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(ScopeName)
	sm.Scope().SetVersion(version.Get())
	s := &podSums{newSum(sm, r.sel, metrics.PodIO), newSum(sm, r.sel, metrics.PodPackets), newSum(sm, r.sel, metrics.PodErrors), newSum(sm, r.sel, metrics.PodDropped)}
	if r.uid == nil {
		r.uid = map[string]*podSums{}
	}
	r.uid[p.UID] = s
	return s
}

// dataPoints is how many points a sum or gauge has.
func dataPoints(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	}
	return 1
}

// addPoint adds one of interface i's cumulative points, started when
// counting began on it, to dps (if the metric is made).
func addPoint(dps *pmetric.NumberDataPointSlice, i *snapshot.Interface, now pcommon.Timestamp, v uint64, attrs []attribute.KeyValue) {
	if dps == nil {
		return
	}
	dp := dps.AppendEmpty()
	dp.SetStartTimestamp(pcommon.NewTimestampFromTime(i.Start))
	dp.SetTimestamp(now)
	dp.SetIntValue(int64(v))
	for _, kv := range attrs {
		dp.Attributes().PutStr(string(kv.Key), kv.Value.AsString())
	}
}

func newMetric(sm pmetric.ScopeMetrics, def metrics.Definition) pmetric.Metric {
	m := sm.Metrics().AppendEmpty()
	m.SetName(def.Name)
	m.SetUnit(def.Unit)
	m.SetDescription(def.Description)
	return m
}

// newSum adds a monotonic cumulative sum and returns its points, or nil
// where sel does not ask for the metric.
func newSum(sm pmetric.ScopeMetrics, sel metrics.Selection, def metrics.Definition) *pmetric.NumberDataPointSlice {
	if !sel.On(def) {
		return nil
	}
	sum := newMetric(sm, def).SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dps := sum.DataPoints()
	return &dps
}
