//go:build linux

package attach

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// xdp attaches with an XDP link (5.9+), receive only: native where the
// driver supports it, else generic. XDP takes one program per interface.
type xdp struct{}

func (xdp) attach(ifindex int, d bpf.Direction, p program, pin string, record func(bpf.Owned) error) (hold, error) {
	owned := bpf.Owned{ProgramID: p.id}
	if err := record(owned); err != nil {
		return hold{}, err
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		var gerr error
		l, gerr = link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: link.XDPGenericMode})
		switch {
		case gerr == nil:
		case errors.Is(err, unix.EBUSY) || errors.Is(gerr, unix.EBUSY) || errors.Is(gerr, unix.EEXIST):
			// Another ebpfnet's, say; tcx and tc take many programs.
			return hold{}, fmt.Errorf("attach xdp: the interface has an XDP program already; count with tcx or tc beside it: %w", gerr)
		default:
			return hold{}, fmt.Errorf("attach xdp: native: %v; generic: %w", err, gerr)
		}
	}
	return pinLink(hold{hook: bpf.HookXDP, ifindex: ifindex, dir: d, owned: owned, link: l}, pin)
}

func (xdp) update(h hold, p program) (hold, error) { return updateLink(h, p) }

func (xdp) linked() bool { return true }

func (xdp) detach(h hold) error { return detachLink(h) }

// present asks the link itself, as for tcx.
func (xdp) present(h hold) (bool, error) {
	info, err := h.link.Info()
	if err != nil {
		return false, err
	}
	x := info.XDP()
	return x != nil && int(x.Ifindex) == h.ifindex, nil
}

func (xdp) find(ifindex int, d bpf.Direction, owned bpf.Owned, pin string) (hold, bool) {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return hold{}, false
	}
	info, err := l.Info()
	if err == nil && info.XDP() != nil && int(info.XDP().Ifindex) == ifindex && xdpHere(ifindex, uint32(info.Program)) {
		return hold{hook: bpf.HookXDP, ifindex: ifindex, dir: d, owned: owned, link: l, pin: pin}, true
	}
	l.Close()
	return hold{}, false
}

// xdpHere reports whether this network namespace's interface ifindex runs
// program id on its XDP hook.
func xdpHere(ifindex int, id uint32) bool {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return false
	}
	x := l.Attrs().Xdp
	return x != nil && x.Attached && x.ProgId == id
}
