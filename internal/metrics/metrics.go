// Package metrics is the one source of truth for what ebpfnet reports:
// metric names, units, descriptions and attributes (OpenTelemetry semantic
// conventions), and the walk from a snapshot to data points that both front
// ends use: the sidecar through the OTel Go SDK (Register), the Collector
// receiver through pdata.
package metrics

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// Definition is one metric: its name, unit, description, instrument and
// attributes, as both front ends make it and receiver/metadata.yaml
// documents it (a test holds the three together).
type Definition struct {
	Name, Unit, Description string
	Kind                    Kind
	// Attributes are those of its data points, in the receiver's output
	// (where a pod's identity is its Resource's); the sidecar adds the
	// pod's to the pod view's points.
	Attributes []attribute.Key
}

// Kind is the instrument a metric is.
type Kind int

const (
	Counter    Kind = iota // monotonic cumulative sum of whole numbers
	Gauge                  // gauge of whole numbers
	FloatGauge             // gauge of real numbers
)

var (
	interfaceAttrs = []attribute.Key{AttrInterface, AttrDirection, AttrNetworkType, AttrTransport, AttrPodUID, AttrPodName, AttrNamespace}
	kernelAttrs    = []attribute.Key{AttrInterface, AttrDirection, AttrPodUID, AttrPodName, AttrNamespace}
	podAttrs       = []attribute.Key{AttrInterface, AttrDirection, AttrNetworkType, AttrTransport}
	podKernelAttrs = []attribute.Key{AttrInterface, AttrDirection}
)

// The metrics of the contract.
var (
	IO = Definition{"system.network.io", "By",
		"Bytes seen on the interface: the frames' length including Ethernet header and VLAN tags, counted by eBPF.", Counter, interfaceAttrs}
	Packets = Definition{"system.network.packet.count", "{packet}",
		"Packets (frames) seen on the interface, counted by eBPF.", Counter, interfaceAttrs}

	Errors = Definition{"system.network.errors", "{error}",
		"Errors on the interface, as the kernel counts them in its interface statistics (totals since the interface was created).", Counter, kernelAttrs}
	Dropped = Definition{"system.network.packet.dropped", "{packet}",
		"Packets dropped on the interface, as the kernel counts them in its interface statistics (totals since the interface was created).", Counter, kernelAttrs}

	// A pod's traffic in the pod's own view (its host veth's, with the
	// directions turned round: transmit is what the pod sent). The
	// semantic conventions name k8s.pod.network.io and .errors; packets and
	// drops take names of the same family.
	PodIO = Definition{"k8s.pod.network.io", "By",
		"Bytes the pod's interface sent (transmit) and received (receive): its host veth's frames, counted by eBPF, in the pod's view.", Counter, podAttrs}
	PodPackets = Definition{"k8s.pod.network.packet.count", "{packet}",
		"Packets (frames) the pod's interface sent and received: its host veth's, counted by eBPF, in the pod's view.", Counter, podAttrs}
	PodErrors = Definition{"k8s.pod.network.errors", "{error}",
		"Errors on the pod's host veth, as the kernel counts them, in the pod's view.", Counter, podKernelAttrs}
	PodDropped = Definition{"k8s.pod.network.packet.dropped", "{packet}",
		"Packets dropped on the pod's host veth, as the kernel counts them, in the pod's view.", Counter, podKernelAttrs}

	InterfacesAttached = Definition{"ebpfnet.interfaces.attached", "{interface}",
		"Interfaces ebpfnet is attached to and counting on: every hook it needs is there.", Gauge, nil}
	HooksRestored = Definition{"ebpfnet.hooks.restored", "{hook}",
		"Hooks of ebpfnet's that someone else removed (a tc qdisc or filter deleted, a link detached) and ebpfnet put back.", Counter, nil}
	AttachErrors = Definition{"ebpfnet.attach.errors", "{error}",
		"Attachments that failed, by error.type: max_interfaces (over the cardinality guard, once per interface refused), attach (the kernel refused a hook), file_limit (out of file descriptors).", Counter, []attribute.Key{AttrErrorType}}
	CollectionDuration = Definition{"ebpfnet.collection.duration", "s",
		"Time one collection took to read every interface's counters.", FloatGauge, nil}
)

// All are every metric, in the order the front ends make them.
var All = []Definition{IO, Packets, Errors, Dropped, PodIO, PodPackets, PodErrors, PodDropped, InterfacesAttached, AttachErrors, HooksRestored, CollectionDuration}

// Attribute keys.
const (
	AttrInterface   = attribute.Key("network.interface.name")
	AttrDirection   = attribute.Key("network.io.direction")
	AttrNetworkType = attribute.Key("network.type")
	AttrTransport   = attribute.Key("network.transport")
	AttrErrorType   = attribute.Key("error.type")
	AttrPodUID      = attribute.Key("k8s.pod.uid")
	AttrPodName     = attribute.Key("k8s.pod.name")
	AttrNamespace   = attribute.Key("k8s.namespace.name")
)

// PodAttributes identifies a pod: k8s.pod.uid, k8s.pod.name and
// k8s.namespace.name, or nothing for no pod.
func PodAttributes(p *pods.Pod) []attribute.KeyValue {
	if p == nil {
		return nil
	}
	return []attribute.KeyValue{AttrPodUID.String(p.UID), AttrPodName.String(p.Name), AttrNamespace.String(p.Namespace)}
}

// PodDirection is direction d of a pod's host veth, seen from the pod:
// what the veth receives, the pod transmitted.
func PodDirection(d bpf.Direction) bpf.Direction { return bpf.NumDirections - 1 - d }

// Attributes returns the attribute set of one series: the interface, the
// direction, the IP version and transport where the bucket has them, and
// the pod, where the interface is the host end of one.
func Attributes(iface string, d bpf.Direction, b Bucket, pod *pods.Pod) []attribute.KeyValue {
	kv := append(make([]attribute.KeyValue, 0, 7), KernelAttributes(iface, d, pod)...)
	if b.NetworkType != "" {
		kv = append(kv, AttrNetworkType.String(b.NetworkType))
	}
	if b.Transport != "" {
		kv = append(kv, AttrTransport.String(b.Transport))
	}
	return kv
}

// KernelAttributes returns the attribute set of one interface's errors or
// drops in direction d: the interface and the direction, and the pod.
func KernelAttributes(iface string, d bpf.Direction, pod *pods.Pod) []attribute.KeyValue {
	return append([]attribute.KeyValue{AttrInterface.String(iface), AttrDirection.String(d.String())}, PodAttributes(pod)...)
}

// EachKernel calls fn for every attached interface of s and direction
// whose kernel statistics were read, counted or not: these series exist
// from attach on, so an idle interface is visible.
func EachKernel(s *snapshot.Snapshot, fn func(i *snapshot.Interface, d bpf.Direction, k snapshot.KernelStats)) {
	for n := range s.Interfaces {
		i := &s.Interfaces[n]
		if !i.KernelOK {
			continue
		}
		for d, k := range i.Kernel {
			fn(i, bpf.Direction(d), k)
		}
	}
}

// Each calls fn for every series of s that has counted something: an
// interface, a direction and a bucket of classes (split says which classes
// merge). Series appear when their first frame is counted and, being
// cumulative, stay.
func Each(s *snapshot.Snapshot, split Split, fn func(i *snapshot.Interface, d bpf.Direction, b int, n bpf.Count)) {
	var buckets [bpf.NumClasses]bpf.Count
	for k := range s.Interfaces {
		i := &s.Interfaces[k]
		for d := range i.Counters {
			split.sum(&i.Counters[d], &buckets)
			for b, n := range buckets[:split.Len()] {
				if n.Packets != 0 {
					fn(i, bpf.Direction(d), b, n)
				}
			}
		}
	}
}
