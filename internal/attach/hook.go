//go:build linux

package attach

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// mechanism is one way of putting a program on an interface's hook: tcx,
// tc or XDP, each a type in a file of its own. The Manager decides what to
// attach where; a mechanism only does it, and tells what is there.
type mechanism interface {
	// attach puts p on the hook of ifindex for direction d. record is
	// called with what will be ebpfnet's there before it is put there,
	// so that pinned state never misses anything ebpfnet attached. With
	// pin set, a link is pinned there.
	attach(ifindex int, d bpf.Direction, p program, pin string, record func(bpf.Owned) error) (hold, error)
	// update puts p in h's place, atomically: no frame goes uncounted.
	update(h hold, p program) (hold, error)
	// detach removes h, if it is still there and still ebpfnet's, and
	// its pin.
	detach(h hold) error
	// present reports whether h is on its hook in this network namespace.
	present(h hold) (bool, error)
	// find takes hold of what pinned state says is ebpfnet's on the hook
	// (a pinned link, or a tc filter), if it is there in this network
	// namespace.
	find(ifindex int, d bpf.Direction, owned bpf.Owned, pin string) (hold, bool)
	// linked says whether what it puts on a hook is a BPF link (tcx,
	// XDP): pinnable, and checked on a timer; otherwise (tc) a filter,
	// which a pinned row records and the kernel's tc notices watch.
	linked() bool
}

// program is a loaded program and its kernel ID.
type program struct {
	name string
	prog *ebpf.Program
	id   uint32
}

// hold is what ebpfnet has on one hook of one interface.
type hold struct {
	hook    bpf.Hook // HookNone: nothing
	ifindex int
	dir     bpf.Direction
	owned   bpf.Owned // what identifies it: the program, tc priority and handle
	link    link.Link // tcx and XDP
	pin     string    // where link is pinned, or ""
}

// closeLink lets go of a link without detaching it (a pinned one goes on).
func (h hold) closeLink() error {
	if h.link == nil {
		return nil
	}
	return h.link.Close()
}
