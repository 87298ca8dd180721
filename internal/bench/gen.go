//go:build linux

package main

// The bench's own programs (constslot.c): the previous datapath design, with
// the interface's slot a constant instead of a lookup, and an empty program.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -strip llvm-strip-19 -target bpfel -tags linux -go-package main constslot constslot.c -- -I../../bpf/headers -I../../bpf
