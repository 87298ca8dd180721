//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

const (
	gatewayInterfaces = 100              // per agent
	gatewayInterval   = 10 * time.Second // every agent's export interval
	// A window of one interval: the agents' starts are spread evenly over
	// it, so each exports once in any window.
	gatewayWindow = gatewayInterval
)

// gatewayRun is one gateway process fed by one fleet, grown step by step.
type gatewayRun struct {
	name       string
	split      string // fleetgen -split: "all" or "none"
	memLimit   int    // MEMORY_LIMIT_MIB
	spikeLimit int    // MEMORY_SPIKE_LIMIT_MIB
	sizes      []int  // agents at each step
	prometheus bool   // its Prometheus exporter on (GATEWAY_EXPORTERS)
}

type gatewayRow struct {
	run                         *gatewayRun
	agents                      int
	pointsPerAgent              float64 // per collection
	offered, accepted, exported float64 // points/s
	refused, failed             float64 // points/s: receiver refused (memory_limiter), exporter send or enqueue failed
	fleetFailed                 float64 // points/s whose export the agents saw fail
	cpu, genCPU                 float64 // % of a core
	others                      float64 // % of the gateway's core that other processes used
	rss, idleRSS                float64 // MB: now, and before the fleet started
	queue                       float64 // the otlp_http exporter's queue at the window's end
	memRefused                  bool
	stepTime                    time.Duration
	sinkRequests, sinkBytes     float64
}

// benchGateway runs the gateway example (examples/otelcol/gateway.yaml,
// the custom Collector) under a fleet of simulated sidecars
// (internal/bench/fleetgen), the gateway pinned to CPU 0 and the fleet to
// CPU 1, and reads the gateway's own telemetry, CPU and memory at each
// fleet size.
func benchGateway() (string, error) {
	if runtime.NumCPU() < 2 {
		return "", fmt.Errorf("needs 2 CPUs (one for the gateway, one for the fleet), have %d", runtime.NumCPU())
	}
	collector, err := filepath.Abs("bin/otelcol-ebpfnet")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(collector); err != nil {
		if out, err := exec.Command("make", "otelcol").CombinedOutput(); err != nil {
			return "", fmt.Errorf("bin/otelcol-ebpfnet is not built and make otelcol failed (run it where the Go module proxy is reachable): %v\n%s", err, out)
		}
	}
	config, err := filepath.Abs("examples/otelcol/gateway.yaml")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "ebpfnet-bench-gateway")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	gen := filepath.Join(dir, "fleetgen")
	if out, err := exec.Command("go", "build", "-o", gen, "./internal/bench/fleetgen").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fleetgen: %v\n%s", err, out)
	}

	runs := []*gatewayRun{
		{name: "as shipped (OTLP only, memory_limiter 400 MiB, the Deployment's)", split: "all", memLimit: 400, spikeLimit: 100, sizes: []int{50, 100, 200}},
		{name: "with its Prometheus exporter (memory_limiter 400 MiB)", split: "all", memLimit: 400, spikeLimit: 100, sizes: []int{10, 25}, prometheus: true},
		{name: "with its Prometheus exporter, memory_limiter raised to 8 GiB", split: "all", memLimit: 8192, spikeLimit: 1024, sizes: []int{25, 50, 100}, prometheus: true},
		{name: "with its Prometheus exporter, memory_limiter 8 GiB, agents with split_by: []", split: "none", memLimit: 8192, spikeLimit: 1024, sizes: []int{200}, prometheus: true},
	}
	var rows []gatewayRow
	start := time.Now()
	for _, r := range runs {
		rs, err := r.measure(collector, config, gen, dir)
		if err != nil {
			return "", fmt.Errorf("%s: %w", r.name, err)
		}
		rows = append(rows, rs...)
	}
	return gatewayReport(rows, runs, time.Since(start)), nil
}

// measure starts a gateway and a fleet and grows the fleet through sizes.
func (r *gatewayRun) measure(collector, config, gen, dir string) ([]gatewayRow, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	otlp, otlpHTTP, prom, backend, health, telemetry := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	logPath := filepath.Join(dir, "gateway.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// At nice -10, so that whatever else runs on the machine takes little
	// of the gateway's CPU (the column "others on its CPU" says how much).
	gw := exec.Command("nice", "-n", "-10", "taskset", "-c", "0", collector, "--config", config)
	gw.Env = append(os.Environ(),
		"OTLP_LISTEN=127.0.0.1:"+otlp,
		"OTLP_HTTP_LISTEN=127.0.0.1:"+otlpHTTP,
		"PROMETHEUS_ENDPOINT=127.0.0.1:"+prom,
		"BACKEND_OTLP_ENDPOINT=http://127.0.0.1:"+backend+"/otlp",
		"HEALTH_CHECK_ENDPOINT=127.0.0.1:"+health,
		"TELEMETRY_PORT="+telemetry,
		fmt.Sprintf("MEMORY_LIMIT_MIB=%d", r.memLimit),
		fmt.Sprintf("MEMORY_SPIKE_LIMIT_MIB=%d", r.spikeLimit),
	)
	if r.prometheus {
		gw.Env = append(gw.Env, "GATEWAY_EXPORTERS=[prometheus, otlp_http]")
	}
	gw.Stdout, gw.Stderr = logFile, logFile
	if err := gw.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = gw.Process.Signal(syscall.SIGTERM); _ = gw.Wait() }()
	fail := func(err error) ([]gatewayRow, error) {
		b, _ := os.ReadFile(logPath)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return nil, fmt.Errorf("%w\ngateway log:\n%s", err, b)
	}
	if err := waitHTTP("http://127.0.0.1:"+health+"/", 30*time.Second); err != nil {
		return fail(err)
	}
	idleRSS, err := status(gw.Process.Pid, "VmRSS")
	if err != nil {
		return fail(err)
	}

	fg := exec.Command("nice", "-n", "-10", "taskset", "-c", "1", gen, "-endpoint", "127.0.0.1:"+otlp, "-sink", "127.0.0.1:"+backend,
		"-interfaces", strconv.Itoa(gatewayInterfaces), "-interval", gatewayInterval.String(), "-split", r.split)
	fg.Stderr = os.Stderr
	in, err := fg.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := fg.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := fg.Start(); err != nil {
		return nil, err
	}
	out := bufio.NewScanner(outPipe)
	defer func() {
		in.Close() // the fleet shuts down
		done := make(chan struct{})
		go func() { _ = fg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = fg.Process.Kill()
			<-done
		}
	}()
	ask := func(cmd string) (string, error) {
		if _, err := fmt.Fprintln(in, cmd); err != nil {
			return "", err
		}
		if !out.Scan() {
			return "", fmt.Errorf("fleetgen exited: %v", out.Err())
		}
		return out.Text(), nil
	}
	type sample struct {
		at        time.Time
		tel       map[string]float64
		cpu, gcpu int64
		cpu0      int64 // CPU 0's busy ticks, the gateway's and others'
		fleet     fleetStats
		rss       int64
	}
	take := func() (sample, error) {
		var s sample
		var err error
		s.at = time.Now()
		if s.tel, err = scrapeTelemetry("http://127.0.0.1:" + telemetry + "/metrics"); err != nil {
			return s, err
		}
		if s.cpu, err = cpuTicks(gw.Process.Pid); err != nil {
			return s, err
		}
		if s.gcpu, err = cpuTicks(fg.Process.Pid); err != nil {
			return s, err
		}
		if s.cpu0, err = cpuBusy(0); err != nil {
			return s, err
		}
		if s.rss, err = status(gw.Process.Pid, "VmRSS"); err != nil {
			return s, err
		}
		line, err := ask("stats")
		if err != nil {
			return s, err
		}
		return s, json.Unmarshal([]byte(line), &s.fleet)
	}

	var rows []gatewayRow
	for _, n := range r.sizes {
		t0 := time.Now()
		if line, err := ask(fmt.Sprintf("grow %d", n)); err != nil || line != "ok" {
			return fail(fmt.Errorf("grow %d: %q %v", n, line, err))
		}
		time.Sleep(time.Second)
		a, err := take()
		if err != nil {
			return fail(err)
		}
		time.Sleep(gatewayWindow)
		b, err := take()
		if err != nil {
			return fail(err)
		}
		secs := b.at.Sub(a.at).Seconds()
		rate := func(key string) float64 { return (b.tel[key] - a.tel[key]) / secs }
		row := gatewayRow{run: r, agents: n, stepTime: time.Since(t0),
			offered:      float64(b.fleet.Points-a.fleet.Points) / secs,
			fleetFailed:  float64(b.fleet.FailedPoints-a.fleet.FailedPoints) / secs,
			accepted:     rate(telAccepted),
			exported:     rate(telSent),
			refused:      rate(telRefused),
			failed:       rate(telSendFailed) + rate(telEnqueueFailed) + rate(telReceiverFailed),
			cpu:          float64(b.cpu-a.cpu) / ticksPerSecond / secs * 100,
			genCPU:       float64(b.gcpu-a.gcpu) / ticksPerSecond / secs * 100,
			others:       float64((b.cpu0-a.cpu0)-(b.cpu-a.cpu)) / ticksPerSecond / secs * 100,
			rss:          float64(b.rss) / 1024,
			idleRSS:      float64(idleRSS) / 1024,
			queue:        b.tel[telQueue],
			memRefused:   b.tel[telMemRefused] > a.tel[telMemRefused],
			sinkRequests: float64(b.fleet.SinkRequests-a.fleet.SinkRequests) / secs,
			sinkBytes:    float64(b.fleet.SinkBytes-a.fleet.SinkBytes) / secs,
		}
		if d := b.fleet.Exports - a.fleet.Exports; d > 0 {
			row.pointsPerAgent = float64(b.fleet.Points-a.fleet.Points) / float64(d)
		}
		fmt.Fprintf(os.Stderr, "   %s, %d agents: offered %.0f/s, accepted %.0f/s, exported %.0f/s, refused %.0f/s, CPU %.1f%% (others %.1f%%), RSS %.0f MB, fleet CPU %.1f%% (%.0fs)\n",
			r.name, n, row.offered, row.accepted, row.exported, row.refused, row.cpu, row.others, row.rss, row.genCPU, row.stepTime.Seconds())
		rows = append(rows, row)
	}
	return rows, nil
}
