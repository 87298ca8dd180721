package metrics

import (
	"slices"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
)

// Selection is what of the metrics a configuration asks for: which metrics
// (config's metrics block) and which class attributes the traffic metrics
// keep (split_by). Both front ends make their points through one.
type Selection struct {
	Split   Split
	enabled map[string]bool
}

// NewSelection reads cfg's metrics block and split_by.
func NewSelection(cfg config.Config) Selection {
	s := Selection{Split: NewSplit(cfg.SplitBy), enabled: map[string]bool{}}
	for _, def := range All {
		s.enabled[def.Name] = cfg.MetricEnabled(def.Name)
	}
	return s
}

// Everything is every metric, split by both class attributes: the default.
var Everything = NewSelection(config.Default())

// On says whether def is made.
func (s Selection) On(def Definition) bool { return s.enabled[def.Name] }

// Bucket is a traffic series' class attributes, as split_by keeps them:
// network.type and network.transport, each "" where absent or not kept.
type Bucket struct{ NetworkType, Transport string }

// Split merges the counters' classes into buckets by the class attributes
// kept. With both kept, each class is its own bucket; with none, one
// bucket has everything. Sums stay exact: a bucket's count is its classes'.
type Split struct {
	of      [bpf.NumClasses]int // class -> bucket
	buckets []Bucket
}

// NewSplit makes the Split that keeps the attributes in by.
func NewSplit(by []string) Split {
	keepType, keepTransport := slices.Contains(by, config.SplitNetworkType), slices.Contains(by, config.SplitTransport)
	var s Split
	for c := range bpf.Class(bpf.NumClasses) {
		var b Bucket
		if keepType {
			b.NetworkType = c.NetworkType()
		}
		if keepTransport {
			b.Transport = c.Transport()
		}
		i := slices.Index(s.buckets, b)
		if i < 0 {
			i = len(s.buckets)
			s.buckets = append(s.buckets, b)
		}
		s.of[c] = i
	}
	return s
}

// Len is how many buckets there are.
func (s Split) Len() int { return len(s.buckets) }

// Bucket returns bucket b's attributes.
func (s Split) Bucket(b int) Bucket { return s.buckets[b] }

// sum adds a direction's classes into buckets.
func (s Split) sum(classes *[bpf.NumClasses]bpf.Count, dst *[bpf.NumClasses]bpf.Count) {
	*dst = [bpf.NumClasses]bpf.Count{}
	for c, n := range classes {
		dst[s.of[c]].Add(n)
	}
}
