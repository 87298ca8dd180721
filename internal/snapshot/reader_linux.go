package snapshot

import (
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/attach"
	"github.com/ebpfnet/ebpfnet/internal/pods"
)

// Reader reads snapshots, reusing its buffers between reads.
type Reader struct {
	objs     *bpf.Objects
	podOf    func(ifindex int) *pods.Pod
	attached []attach.Interface
	rows     []bpf.Counters
	ks       *kernelStats
	kernel   map[int][bpf.NumDirections]KernelStats
}

// NewReader returns a Reader of objs' counters and of the kernel's own
// statistics of the interfaces in the calling thread's network namespace.
// podOf, if not nil, says which pod an interface belongs to.
func NewReader(objs *bpf.Objects, podOf func(ifindex int) *pods.Pod) (*Reader, error) {
	ks, err := newKernelStats()
	if err != nil {
		return nil, err
	}
	return &Reader{objs: objs, podOf: podOf, ks: ks, kernel: map[int][bpf.NumDirections]KernelStats{}}, nil
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
		var pod *pods.Pod
		if r.podOf != nil {
			pod = r.podOf(a.Index)
		}
		dst.Interfaces = append(dst.Interfaces, Interface{
			Pod:      pod,
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
