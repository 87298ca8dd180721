// Package snapshot reads every attached interface's counters at once into
// a plain Go value, the one thing both front ends turn into metrics.
package snapshot

import (
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/attach"
)

// Interface is one interface's counters since Start.
type Interface struct {
	Name     string
	Index    int
	Start    time.Time // when counting began: attach time, or kept with pinned state
	Counting bool      // every hook asked for is there (attach.Interface.Counting)
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

// Reader reads snapshots, reusing its buffers between reads.
type Reader struct {
	objs     *bpf.Objects
	attached []attach.Interface
	rows     []bpf.Counters
	ks       *kernelStats
	kernel   map[int][bpf.NumDirections]KernelStats
}

// NewReader returns a Reader of objs' counters and of the kernel's own
// statistics of the interfaces in the calling thread's network namespace.
func NewReader(objs *bpf.Objects) (*Reader, error) {
	ks, err := newKernelStats()
	if err != nil {
		return nil, err
	}
	return &Reader{objs: objs, ks: ks, kernel: map[int][bpf.NumDirections]KernelStats{}}, nil
}

// Close releases the Reader's netlink socket.
func (r *Reader) Close() { r.ks.close() }

// Read fills dst with the counters of the interfaces mgr has attached,
// reusing dst's slice. One batch syscall reads all of them, while mgr
// keeps every row with its interface: a row freed and given to another
// interface meanwhile would pair one interface's name and start time with
// the other's counts.
func (r *Reader) Read(mgr *attach.Manager, dst *Snapshot) error {
	var err error
	r.attached, err = mgr.View(r.attached[:0], func(attached []attach.Interface) error {
		rows := 0
		if n := len(attached); n > 0 {
			rows = int(attached[n-1].Row) + 1
		}
		if cap(r.rows) < rows {
			r.rows = make([]bpf.Counters, rows)
		}
		r.rows = r.rows[:rows]
		return r.objs.ReadCounters(r.rows)
	})
	if err != nil {
		return err
	}
	kerr := r.ks.read(r.kernel)
	dst.Time = time.Now()
	dst.Interfaces = dst.Interfaces[:0]
	for _, a := range r.attached {
		k, ok := r.kernel[a.Index]
		dst.Interfaces = append(dst.Interfaces, Interface{
			Name:     a.Name,
			Index:    a.Index,
			Start:    a.Start,
			Counting: a.Counting,
			Counters: r.rows[a.Row],
			Kernel:   k,
			KernelOK: ok && kerr == nil,
		})
	}
	if dst.AttachErrors == nil {
		dst.AttachErrors = map[string]uint64{}
	}
	dst.HooksRestored = mgr.CopyErrors(dst.AttachErrors)
	return nil
}
