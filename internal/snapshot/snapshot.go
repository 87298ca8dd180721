// Package snapshot reads every attached interface's counters at once into
// a plain Go value, the one thing both front ends turn into metrics.
package snapshot

import (
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/pods"
)

// Interface is one interface's counters since Start.
type Interface struct {
	Name     string
	Index    int
	Start    time.Time // when counting began: attach time, or kept with pinned state
	Counting bool      // every hook asked for is there (attach.Interface.Counting)
	// Pod is the pod whose network the interface is the host end of, or
	// nil (internal/pods).
	Pod      *pods.Pod
	Counters bpf.Counters
	// Kernel is the kernel's own error and drop counters for the
	// interface (totals since it was created), read in the same collection;
	// KernelOK is false where they could not be read (the interface went
	// away meanwhile).
	Kernel   [bpf.NumDirections]KernelStats
	KernelOK bool
}

// KernelStats are one direction's errors and drops as the kernel counts
// them in the interface's statistics (rtnl_link_stats64).
type KernelStats struct {
	Errors  uint64
	Dropped uint64
}

// Snapshot is what ebpfnet counted, as of Time.
type Snapshot struct {
	Time       time.Time
	Interfaces []Interface // in counters-row order
	// AttachErrors counts failed attachments by error type, every known
	// type included.
	AttachErrors map[string]uint64
	// HooksRestored counts hooks someone else removed that were put back.
	HooksRestored uint64
}

// Counting is how many interfaces have every hook asked for.
func (s *Snapshot) Counting() int {
	n := 0
	for i := range s.Interfaces {
		if s.Interfaces[i].Counting {
			n++
		}
	}
	return n
}

// Find returns the named interface, or nil.
func (s *Snapshot) Find(name string) *Interface {
	for i := range s.Interfaces {
		if s.Interfaces[i].Name == name {
			return &s.Interfaces[i]
		}
	}
	return nil
}
