package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// The programs must pass the verifier with CAP_BPF and CAP_NET_ADMIN alone.
// Without CAP_PERFMON the verifier applies its Spectre mitigations: it
// refuses a variable offset on a packet pointer and pointer arithmetic
// between pointers, which a root-only test would never notice.
func TestLoadsWithCapBPFAndNetAdminAlone(t *testing.T) {
	testenv.Privileged(t)
	var objs *Objects
	eff, err := testenv.WithCapabilities([]uintptr{unix.CAP_BPF, unix.CAP_NET_ADMIN}, func() error {
		var err error
		objs, err = Load(Options{MaxInterfaces: 4, Programs: []string{ProgramIngress, ProgramEgress, ProgramXDP}})
		return err
	})
	if want := uint64(1)<<unix.CAP_BPF | 1<<unix.CAP_NET_ADMIN; eff != want {
		t.Fatalf("the loading thread had capabilities %#x, want exactly %#x", eff, want)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Logf("verifier log:\n%+v", ve)
		}
		t.Fatalf("load with CAP_BPF and CAP_NET_ADMIN: %v", err)
	}
	defer objs.Close()

	// And what was loaded that way counts like the root-loaded programs.
	h := &harness{objs: objs, rows: make([]Counters, 1),
		ingress: objs.Program(ProgramIngress), egress: objs.Program(ProgramEgress), xdp: objs.Program(ProgramXDP)}
	h.setFraming(t, FramingEthernet)
	for _, c := range parserCases() {
		h.check(t, c.frame, c.want)
	}
}

// Without CAP_PERFMON the verifier may put speculation barriers (nospec,
// an lfence on x86) into a program it could not otherwise prove safe under
// speculation; on the per-packet path one costs several nanoseconds, more
// than the rest of the program. The slow path may have some; the programs
// themselves, up to their first subprogram, must have none.
func TestNoSpeculationBarrierOnTheFastPath(t *testing.T) {
	testenv.Privileged(t)
	names := []string{ProgramIngress, ProgramEgress, ProgramXDP}
	var objs *Objects
	if _, err := testenv.WithCapabilities([]uintptr{unix.CAP_BPF, unix.CAP_NET_ADMIN}, func() (err error) {
		objs, err = Load(Options{MaxInterfaces: 1, Programs: names})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	const nospec = asm.OpCode(0xc2) // BPF_ST | BPF_NOSPEC
	for _, name := range names {
		info, err := objs.Program(name).Info()
		if err != nil {
			t.Fatal(err)
		}
		insns, err := info.Instructions()
		if err != nil {
			t.Fatal(err)
		}
		funcs, err := info.FuncInfos()
		if err != nil || len(funcs) < 2 {
			t.Fatalf("%s: function infos %v, %v: want the program and its slow path", name, funcs, err)
		}
		end, barriers := funcs[1].Offset, 0
		for it := insns.Iterate(); it.Next() && it.Offset < end; {
			if it.Ins.OpCode == nospec {
				barriers++
			}
		}
		if barriers != 0 {
			t.Errorf("%s: %d speculation barriers in the first %d instructions (bpftool prog dump xlated shows them as nospec)", name, barriers, end)
		}
	}
}
