//go:build linux

// Command bench measures ebpfnet's speed and footprint beside baselines
// measured in the same run, prints the tables, and writes them to
// BENCHMARKS.md. Run it as root: `sudo make bench`.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

type section struct {
	name string
	run  func() (string, error)
}

func main() {
	// Everything runs in a network namespace of its own: the benchmarks
	// create and attach to interfaces.
	os.Exit(testenv.RunIsolated(bench))
}

func bench() int {
	out := flag.String("o", "", "also write the report to this Markdown file")
	only := flag.String("only", "", "run only the sections whose names contain this")
	flag.Parse()

	sections := []section{
		{"datapath: per-packet cost (BPF_PROG_TEST_RUN)", benchDatapath},
		{"datapath: attaching", benchAttach},
		{"datapath: real traffic", benchTraffic},
		{"sidecar: one collection", benchCollection},
		{"sidecar: footprint", benchFootprint},
		{"peers: same interfaces, same interval", benchPeers},
		{"gateway: a fleet's load", benchGateway},
		{"pods: attribution", benchPods},
	}

	var report strings.Builder
	fmt.Fprintf(&report, "# Benchmarks\n\nMeasured by `sudo make bench` (`go run ./internal/bench -o BENCHMARKS.md`) on %s.\n\n%s\n",
		time.Now().UTC().Format("2006-01-02"), machine())
	for _, s := range sections {
		if *only != "" && !strings.Contains(s.name, *only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", s.name)
		body, err := s.run()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.name, err)
			return 1
		}
		fmt.Fprintf(&report, "## %s\n\n%s\n", s.name, body)
	}
	fmt.Print(report.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	return 0
}

func machine() string {
	kernel, _ := exec.Command("uname", "-r").Output()
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("Machine: %d CPUs (%s), kernel %s, %s.\n",
		runtime.NumCPU(), cpu, strings.TrimSpace(string(kernel)), runtime.Version())
}
