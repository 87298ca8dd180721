//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
)

const footprintWindow = time.Minute

// benchFootprint runs the built sidecar on 100 and on 1000 veth interfaces,
// every one with every class in both directions (22 series per counter
// metric), with a 10 s interval, exporting OTLP/gRPC to a local receiver,
// for a minute, beside the same binary selecting no interface (the SDK and
// exporter alone), and reads their resident memory and CPU time from /proc.
func benchFootprint() (string, error) {
	dir, err := os.MkdirTemp("", "ebpfnet-bench")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "ebpfnet")
	if out, err := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", bin, "./cmd/ebpfnet").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v\n%s", err, out)
	}

	f, err := newFleet()
	if err != nil {
		return "", err
	}
	defer f.close()
	if err := f.grow(1000); err != nil {
		return "", err
	}
	srv, err := otlptest.Listen("127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer srv.Stop()

	type run struct {
		name string
		args []string
		env  []string
		cmd  *exec.Cmd
		cpu0 int64
	}
	runs := []*run{
		{name: "ebpfnet, 100 interfaces, every class", args: []string{"--interfaces", "bc00*"}},
		{name: "ebpfnet, 1000 interfaces, every class", args: []string{"--interfaces", "bc*"}},
		{name: "ebpfnet, 100 interfaces, every class, GOGC=100 (Go's default)", args: []string{"--interfaces", "bc00*"}, env: []string{"GOGC=100"}},
		{name: "ebpfnet, 1000 interfaces, every class, GOGC=100 (Go's default)", args: []string{"--interfaces", "bc*"}, env: []string{"GOGC=100"}},
		{name: "baseline: same binary, no interface selected", args: []string{"--interfaces", "none-at-all"}},
	}
	for _, r := range runs {
		r.cmd = exec.Command(bin, append(r.args, "--interval", "10s")...)
		r.cmd.Env = append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + srv.Addr, "OTEL_EXPORTER_OTLP_INSECURE=true"}, r.env...)
		if err := r.cmd.Start(); err != nil {
			return "", err
		}
		defer func() { _ = r.cmd.Process.Signal(syscall.SIGTERM); _ = r.cmd.Wait() }()
	}
	time.Sleep(10 * time.Second) // past start-up: loading and attaching 1000
	if err := f.send(); err != nil {
		return "", err
	}
	for _, r := range runs {
		if r.cpu0, err = cpuTicks(r.cmd.Process.Pid); err != nil {
			return "", err
		}
	}
	time.Sleep(footprintWindow)

	var b strings.Builder
	fmt.Fprintf(&b, "The built sidecar, OTLP/gRPC to a local receiver every 10 s, measured over %v after a 10 s start-up, every interface with one frame of each of the 11 classes in each direction; CPU from /proc/PID/stat, memory from /proc/PID/status.\n\n", footprintWindow)
	b.WriteString("| process | CPU (% of one core) | RSS now | of which the binary's pages (RssFile) | of which heap, stacks and the rest (RssAnon) | RSS peak |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range runs {
		cpu1, err := cpuTicks(r.cmd.Process.Pid)
		if err != nil {
			return "", err
		}
		rss, err := status(r.cmd.Process.Pid, "VmRSS")
		if err != nil {
			return "", err
		}
		hwm, _ := status(r.cmd.Process.Pid, "VmHWM")
		file, _ := status(r.cmd.Process.Pid, "RssFile")
		anon, _ := status(r.cmd.Process.Pid, "RssAnon")
		pct := float64(cpu1-r.cpu0) / ticksPerSecond / footprintWindow.Seconds() * 100
		fmt.Fprintf(&b, "| %s | %.2f%% | %.1f MB | %.1f MB | %.1f MB | %.1f MB |\n", r.name, pct, float64(rss)/1024, float64(file)/1024, float64(anon)/1024, float64(hwm)/1024)
	}
	n, _ := srv.Requests()
	fmt.Fprintf(&b, "\nThe receiver (a gRPC server with the default 4 MiB request limit, as a Collector's OTLP receiver) got %d requests: the sidecar sends a collection in requests of at most 2048 points. The sidecar runs Go's garbage collector at GOGC=50 unless GOGC is set; GOGC=100 (Go's default) trades memory for a little CPU. Targets (issue 9): 100 interfaces at most 30 MB resident; 1000 interfaces at most 64 MB and 1%% of a core. "+
		"CPU time is counted in 10 ms ticks: over a minute, 0.02%% is one tick.\n", n)
	return b.String(), nil
}

// ticksPerSecond is USER_HZ, 100 on Linux.
const ticksPerSecond = 100

func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, nil
}

// status returns a /proc/PID/status field in kB.
func status(pid int, key string) (int64, error) {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}
