//go:build ebpfnet_variant

package bpf

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// variant makes the programs of a test-only build (-tags ebpfnet_variant)
// differ from the real ones: one harmless instruction more at the start of
// each, so their tags differ while they count exactly the same. The upgrade
// tests run this build and then the real one over the same pinned state.
func variant(spec *ebpf.CollectionSpec) {
	for _, ps := range spec.Programs {
		first := ps.Instructions[0]
		nop := asm.Mov.Imm(asm.R0, 0).WithMetadata(first.Metadata).WithReference("")
		first = btf.WithFuncMetadata(first.WithSymbol(""), nil)
		ps.Instructions = append(asm.Instructions{nop, first}, ps.Instructions[1:]...)
	}
}
