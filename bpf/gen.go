package bpf

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -strip llvm-strip-19 -target bpfel -tags linux ebpfnet ebpfnet.c -- -I./headers
