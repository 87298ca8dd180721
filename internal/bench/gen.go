package main

// The previous datapath design, for the per-packet table only: the same
// programs with the interface's slot a constant instead of a lookup
// (EBPFNET_CONST_SLOT in bpf/ebpfnet.c).
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -DEBPFNET_CONST_SLOT" -strip llvm-strip-19 -target bpfel -go-package main constslot ../../bpf/ebpfnet.c -- -I../../bpf/headers
