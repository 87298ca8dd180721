//go:build linux

package attach

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// tcx attaches with a tcx link (6.6+): receive at the head of the ingress
// hook, so that no program ahead of ours can drop or redirect a frame the
// kernel has already counted; transmit at the tail of egress, so that a
// frame a program ahead of ours drops, which the kernel never transmits,
// is not counted either.
type tcx struct{}

func tcxType(d bpf.Direction) ebpf.AttachType {
	if d == bpf.Transmit {
		return ebpf.AttachTCXEgress
	}
	return ebpf.AttachTCXIngress
}

func (tcx) attach(ifindex int, d bpf.Direction, p program, pin string, record func(bpf.Owned) error) (hold, error) {
	owned := bpf.Owned{ProgramID: p.id}
	if err := record(owned); err != nil {
		return hold{}, err
	}
	anchor := link.Head()
	if d == bpf.Transmit {
		anchor = link.Tail()
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.prog, Attach: tcxType(d), Anchor: anchor})
	if err != nil {
		return hold{}, fmt.Errorf("attach tcx: %w", err)
	}
	h := hold{hook: bpf.HookTCX, ifindex: ifindex, dir: d, owned: owned, link: l}
	return pinLink(h, pin)
}

// pinLink pins h's link at pin, in place of a pin left by a link that is
// gone (a hook someone else removed).
func pinLink(h hold, pin string) (hold, error) {
	if pin == "" {
		return h, nil
	}
	if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
		h.link.Close()
		return hold{}, fmt.Errorf("pin %s link: %w", h.dir, err)
	}
	if err := h.link.Pin(pin); err != nil {
		h.link.Close()
		return hold{}, fmt.Errorf("pin %s link: %w", h.dir, err)
	}
	h.pin = pin
	return h, nil
}

func (tcx) update(h hold, p program) (hold, error) { return updateLink(h, p) }

func (tcx) linked() bool { return true }

func updateLink(h hold, p program) (hold, error) {
	if err := h.link.Update(p.prog); err != nil {
		return h, err
	}
	h.owned.ProgramID = p.id
	return h, nil
}

func (tcx) detach(h hold) error { return detachLink(h) }

// detachLink detaches a tcx or XDP link: unpinned and closed, it goes.
func detachLink(h hold) error {
	if h.link == nil {
		return nil
	}
	var err error
	if h.pin != "" {
		err = h.link.Unpin()
	}
	return errors.Join(err, h.link.Close())
}

// present asks the link itself: a link someone detached (bpftool link
// detach) has no interface any more. One system call, cheap enough to ask
// every link often.
func (tcx) present(h hold) (bool, error) {
	info, err := h.link.Info()
	if err != nil {
		return false, err
	}
	t := info.TCX()
	return t != nil && int(t.Ifindex) == h.ifindex, nil
}

func (tcx) find(ifindex int, d bpf.Direction, owned bpf.Owned, pin string) (hold, bool) {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return hold{}, false
	}
	h := hold{hook: bpf.HookTCX, ifindex: ifindex, dir: d, owned: owned, link: l, pin: pin}
	info, err := l.Info()
	if err != nil || info.TCX() == nil || int(info.TCX().Ifindex) != ifindex {
		l.Close()
		return hold{}, false
	}
	// The same ifindex in another network namespace is another
	// interface: the link must be on this namespace's hook.
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: tcxType(d)})
	if err != nil {
		l.Close()
		return hold{}, false
	}
	for _, p := range res.Programs {
		if id, ok := p.LinkID(); ok && id == info.ID {
			return h, true
		}
	}
	l.Close()
	return hold{}, false
}

// primeTCX has cilium/ebpf decide now, while file descriptors are
// plentiful, that the kernel has tcx. It asks only after an attach fails,
// by loading a program, and keeps the answer for good: asked first when the
// process is out of file descriptors, it would conclude "tcx not
// supported", and every later failure would say so instead of its cause.
// An attach to an interface that cannot exist fails at once and asks.
func primeTCX(p *ebpf.Program) {
	if p == nil {
		return
	}
	if l, err := link.AttachTCX(link.TCXOptions{Interface: 0x7fffffff, Program: p, Attach: ebpf.AttachTCXIngress}); err == nil {
		l.Close()
	}
}
