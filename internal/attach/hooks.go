package attach

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// The legacy tc filters ebpfnet installs, recognisable in `tc filter show`
// by their name (the program's) and by these priorities and handle. On
// ingress, priority 1 puts ours ahead of other filters, so it sees every
// frame the kernel has counted; on egress, the last priority puts it behind
// them, so it sees only frames that no other filter dropped.
const (
	tcPriorityIngress = 1
	tcPriorityEgress  = 0xffff
	tcHandle          = 0xeb9f
	tcPrefix          = "ebpfnet"
)

func tcPriority(dir bpf.Direction) uint16 {
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

func tcFilter(index int, dir bpf.Direction, prog *ebpf.Program, name string) *netlink.BpfFilter {
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: index,
			Parent:    tcParent(dir),
			Handle:    tcHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  tcPriority(dir),
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

// attachTC adds a clsact qdisc if the interface has none and puts our
// filter in, replacing one a crashed ebpfnet left behind.
func attachTC(index int, dir bpf.Direction, prog *ebpf.Program, name string) error {
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
	if err := removeStaleTC(index, dir); err != nil {
		return err
	}
	if err := netlink.FilterReplace(tcFilter(index, dir, prog, name)); err != nil {
		return fmt.Errorf("add tc filter: %w", err)
	}
	return nil
}

// removeStaleTC deletes ebpfnet filters that are not where this version
// puts its own (an older layout's priority or handle).
func removeStaleTC(index int, dir bpf.Direction) error {
	filters, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}, tcParent(dir))
	if err != nil {
		return fmt.Errorf("list tc filters: %w", err)
	}
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || !strings.HasPrefix(bf.Name, tcPrefix) {
			continue
		}
		if bf.Priority == tcPriority(dir) && bf.Handle == tcHandle {
			continue // replaced in place
		}
		if err := netlink.FilterDel(bf); err != nil {
			return fmt.Errorf("remove stale tc filter %s: %w", bf.Name, err)
		}
	}
	return nil
}

// hasTC reports whether our filter is on the interface.
func hasTC(index int, dir bpf.Direction) bool {
	filters, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}, tcParent(dir))
	if err != nil {
		return false
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, tcPrefix) &&
			bf.Priority == tcPriority(dir) && bf.Handle == tcHandle {
			return true
		}
	}
	return false
}

// detachTC removes our filter. The clsact qdisc stays: other programs may
// hang off it, and it costs nothing empty.
func detachTC(index int, dir bpf.Direction) error {
	err := netlink.FilterDel(tcFilter(index, dir, nil, ""))
	if err == nil || gone(err) {
		return nil
	}
	return fmt.Errorf("remove tc filter: %w", err)
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
		return nil, fmt.Errorf("attach xdp: native: %v; generic: %w", err, gerr)
	}
	return l, nil
}
