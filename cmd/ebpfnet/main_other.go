//go:build !linux

// Command ebpfnet counts per-interface traffic with eBPF, which only Linux
// has: elsewhere it says so.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "ebpfnet: counts with eBPF programs on Linux network interfaces; %s is not Linux\n", runtime.GOOS)
	os.Exit(1)
}
