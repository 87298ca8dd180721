package attach

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// The legacy tc filters ebpfnet installs. On ingress, priority 1 puts ours
// ahead of other filters, so it sees every frame the kernel has counted; on
// egress, the last priority puts it behind them, so it sees only frames
// that no other filter dropped. Each instance takes a handle of its own at
// that priority (cls_bpf runs every filter of a priority in turn, and ours
// return TC_ACT_UNSPEC, so each sees every frame): two instances on one
// interface both count, and each removes only its own filter. Handles are
// in tcHandleBase's range, so that `tc filter show` tells ours apart.
const (
	tcPriorityIngress = 1
	tcPriorityEgress  = 0xffff
	tcHandleBase      = 0xeb9f0000
)

func tcPriority(dir bpf.Direction) uint32 {
	if dir == bpf.Receive {
		return tcPriorityIngress
	}
	return tcPriorityEgress
}

func tcParent(dir bpf.Direction) uint32 {
	if dir == bpf.Receive {
		return netlink.HANDLE_MIN_INGRESS
	}
	return netlink.HANDLE_MIN_EGRESS
}

// randomTCHandle returns a handle in ebpfnet's range.
func randomTCHandle() uint32 {
	return tcHandleBase | uint32(1+rand.IntN(0xfffe))
}

func tcFilter(index int, dir bpf.Direction, owned bpf.Owned, prog *ebpf.Program, name string) *netlink.BpfFilter {
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: index,
			Parent:    tcParent(dir),
			Handle:    owned.TCHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  uint16(owned.TCPriority),
		},
		Name:         name,
		DirectAction: true,
		Fd:           -1,
	}
	if prog != nil {
		f.Fd = prog.FD()
	}
	return f
}

// attachTC adds a clsact qdisc if the interface has none and adds our
// filter, at owned's priority and handle; it fails with EEXIST if that
// handle is taken.
func attachTC(index int, dir bpf.Direction, owned bpf.Owned, prog *ebpf.Program, name string) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	if err := netlink.FilterAdd(tcFilter(index, dir, owned, prog, name)); err != nil {
		return fmt.Errorf("add tc filter: %w", err)
	}
	return nil
}

// ownedTC returns our filter on the interface: the one at owned's priority
// and handle running owned's program. Anything else is someone else's.
func ownedTC(index int, dir bpf.Direction, owned bpf.Owned) (*netlink.BpfFilter, error) {
	filters, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}, tcParent(dir))
	if err != nil {
		if gone(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list tc filters: %w", err)
	}
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if ok && uint32(bf.Priority) == owned.TCPriority && bf.Handle == owned.TCHandle &&
			owned.ProgramID != 0 && uint32(bf.Id) == owned.ProgramID {
			return bf, nil
		}
	}
	return nil, nil
}

// replaceTC swaps prog into our filter in place: the kernel replaces the
// filter's program atomically, so no frame goes uncounted.
func replaceTC(index int, dir bpf.Direction, owned bpf.Owned, prog *ebpf.Program, name string) error {
	if err := netlink.FilterReplace(tcFilter(index, dir, owned, prog, name)); err != nil {
		return fmt.Errorf("replace tc filter: %w", err)
	}
	return nil
}

// detachTC removes our filter, if it is still there and still ours. The
// clsact qdisc stays: other programs may hang off it, and it costs nothing
// empty.
func detachTC(index int, dir bpf.Direction, owned bpf.Owned) error {
	f, err := ownedTC(index, dir, owned)
	if f == nil || err != nil {
		return err
	}
	if err := netlink.FilterDel(f); err != nil && !gone(err) {
		return fmt.Errorf("remove tc filter: %w", err)
	}
	return nil
}

// gone reports errors that mean the interface or the filter is no longer
// there: nothing left to detach.
func gone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

func attachTCX(index int, dir bpf.Direction, prog *ebpf.Program) (link.Link, error) {
	typ := ebpf.AttachTCXIngress
	if dir == bpf.Transmit {
		typ = ebpf.AttachTCXEgress
	}
	// Receive at the head, so that no program ahead of ours can drop or
	// redirect a frame the kernel has already counted; transmit at the
	// tail, so that a frame a program ahead of ours drops, which the kernel
	// never transmits, is not counted either.
	anchor := link.Head()
	if dir == bpf.Transmit {
		anchor = link.Tail()
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: index, Program: prog, Attach: typ, Anchor: anchor})
	if err != nil {
		return nil, fmt.Errorf("attach tcx: %w", err)
	}
	return l, nil
}

// attachXDP attaches in native mode, or in generic mode where the driver
// has no XDP support.
func attachXDP(index int, prog *ebpf.Program) (link.Link, error) {
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: index, Flags: link.XDPDriverMode})
	if err == nil {
		return l, nil
	}
	l, gerr := link.AttachXDP(link.XDPOptions{Program: prog, Interface: index, Flags: link.XDPGenericMode})
	if gerr != nil {
		if errors.Is(err, unix.EBUSY) || errors.Is(gerr, unix.EBUSY) || errors.Is(gerr, unix.EEXIST) {
			// XDP takes one program per interface (another ebpfnet's,
			// say); tcx and tc take many.
			return nil, fmt.Errorf("attach xdp: the interface has an XDP program already; count with tcx or tc beside it: %w", gerr)
		}
		return nil, fmt.Errorf("attach xdp: native: %v; generic: %w", err, gerr)
	}
	return l, nil
}
