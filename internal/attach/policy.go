//go:build linux

package attach

import (
	"errors"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
)

// Programs returns the programs the options need: one per hook, shared by
// every interface.
func Programs(mode string, directions []string) []string {
	if mode == config.AttachXDP {
		return []string{bpf.ProgramXDP}
	}
	var names []string
	for _, d := range directions {
		if d == config.DirectionReceive {
			names = append(names, bpf.ProgramIngress)
		} else {
			names = append(names, bpf.ProgramEgress)
		}
	}
	return names
}

// programFor names the program that serves hook in direction d.
func programFor(hook bpf.Hook, d bpf.Direction) string {
	switch {
	case hook == bpf.HookXDP:
		return bpf.ProgramXDP
	case d == bpf.Transmit:
		return bpf.ProgramEgress
	}
	return bpf.ProgramIngress
}

// hookFor resolves a mode to the hook it means on this kernel, decided
// once, at start: auto is tcx where the kernel has it, else tc. It never
// changes afterwards: an attach that fails is an error to report, not a
// reason to count some interfaces another way.
func hookFor(mode string, hasTCX func() bool) bpf.Hook {
	switch mode {
	case config.AttachXDP:
		return bpf.HookXDP
	case config.AttachTC:
		return bpf.HookTC
	case config.AttachAuto:
		if !hasTCX() {
			return bpf.HookTC
		}
	}
	return bpf.HookTCX
}

// kernelHasTCX asks the kernel about lo's tcx hook: a kernel without tcx
// (before 6.6) refuses the query. It opens no file descriptor, so a low
// file limit cannot make it answer wrongly.
func kernelHasTCX() bool {
	_, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: ebpf.AttachTCXIngress})
	return !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.EINVAL)
}

// directions are the directions the options count, in row order.
func directions(want []string) []bpf.Direction {
	var out []bpf.Direction
	for _, d := range []bpf.Direction{bpf.Receive, bpf.Transmit} {
		for _, w := range want {
			if w == d.String() {
				out = append(out, d)
			}
		}
	}
	return out
}
