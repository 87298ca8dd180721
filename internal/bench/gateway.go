//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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
	split      string   // fleetgen -split: "all" or "none"
	memLimit   int      // MEMORY_LIMIT_MIB
	spikeLimit int      // MEMORY_SPIKE_LIMIT_MIB
	sizes      []int    // agents at each step
	args       []string // added to the Collector's command line
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
		{name: "as shipped (memory_limiter 400 MiB, the Deployment's)", split: "all", memLimit: 400, spikeLimit: 100, sizes: []int{10, 25}},
		{name: "memory_limiter raised to 8 GiB", split: "all", memLimit: 8192, spikeLimit: 1024, sizes: []int{25, 50, 100}},
		{name: "memory_limiter 8 GiB, agents with split_by: []", split: "none", memLimit: 8192, spikeLimit: 1024, sizes: []int{200}},
		{name: "without its Prometheus exporter (memory_limiter 400 MiB)", split: "all", memLimit: 400, spikeLimit: 100, sizes: []int{50, 100, 200},
			args: []string{"--config=yaml:service::pipelines::metrics::exporters: [otlp_http]"}},
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
	gw := exec.Command("nice", append([]string{"-n", "-10", "taskset", "-c", "0", collector, "--config", config}, r.args...)...)
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

// fleetStats is fleetgen's "stats" answer.
type fleetStats struct {
	Agents       int   `json:"agents"`
	Exports      int64 `json:"exports"`
	Points       int64 `json:"points"`
	Failed       int64 `json:"failed"`
	FailedPoints int64 `json:"failed_points"`
	SinkRequests int64 `json:"sink_requests"`
	SinkBytes    int64 `json:"sink_bytes"`
}

// The Collector's own metrics (v0.165.0, its Prometheus reader), summed
// over their label sets unless a label is given.
const (
	telAccepted       = `otelcol_receiver_accepted_metric_points`
	telRefused        = `otelcol_receiver_refused_metric_points`
	telReceiverFailed = `otelcol_receiver_failed_metric_points`
	telSent           = `otelcol_exporter_sent_metric_points{exporter="otlp_http"}`
	telSendFailed     = `otelcol_exporter_send_failed_metric_points{exporter="otlp_http"}`
	telEnqueueFailed  = `otelcol_exporter_enqueue_failed_metric_points{exporter="otlp_http"}`
	telQueue          = `otelcol_exporter_queue_size{exporter="otlp_http"}`
	telMemRefused     = `otelcol_processor_memory_limiter_refused_metric_points`
)

// scrapeTelemetry reads the Collector's telemetry endpoint into the
// values of the keys above.
func scrapeTelemetry(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	keys := []string{telAccepted, telRefused, telReceiverFailed, telSent, telSendFailed, telEnqueueFailed, telQueue, telMemRefused}
	vals := map[string]float64{}
	for line := range bytes.Lines(body) {
		l := string(bytes.TrimSpace(line))
		if l == "" || l[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(l, ' ')
		if sp < 0 {
			continue
		}
		name, labels, _ := strings.Cut(l[:sp], "{")
		v, err := strconv.ParseFloat(l[sp+1:], 64)
		if err != nil {
			continue
		}
		for _, k := range keys {
			kname, klabel, _ := strings.Cut(k, "{")
			if name == kname && strings.Contains(labels, strings.TrimSuffix(klabel, "}")) {
				vals[k] += v
			}
		}
	}
	return vals, nil
}

// cpuBusy is CPU n's busy time in ticks (/proc/stat: all but idle and
// iowait).
func cpuBusy(n int) (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("cpu%d ", n)
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			var busy int64
			for i, f := range strings.Fields(rest) {
				v, _ := strconv.ParseInt(f, 10, 64)
				if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user already
					busy += v
				}
			}
			return busy, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/stat", prefix)
}

func waitHTTP(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %v: %v", url, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n ports free on 127.0.0.1 just now.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// nominal is what the row's agents send a second when every export goes
// through.
func (r gatewayRow) nominal() float64 {
	return float64(r.agents) * r.pointsPerAgent / gatewayInterval.Seconds()
}

// saturated says whether the gateway did not keep up: it refused or
// dropped points, took less than 95% of what the fleet sends, or used
// 90% of its core.
func (r gatewayRow) saturated() bool {
	return r.refused+r.failed > 0.01*r.nominal() || r.accepted < 0.95*r.nominal() || r.cpu >= 90
}

// capacity is how many agents one core of the run's gateway carries: the
// most it accepted (in agents' worth of points) where it saturated, else
// the largest fleet scaled to a whole core by its CPU.
func capacity(rows []gatewayRow, run *gatewayRun) (agents float64, measured bool) {
	var last gatewayRow
	for _, r := range rows {
		if r.run != run {
			continue
		}
		last = r
		if r.saturated() {
			measured = true
			agents = max(agents, r.accepted/(r.pointsPerAgent/gatewayInterval.Seconds()))
		}
	}
	if !measured && last.cpu > 0 {
		agents = float64(last.agents) * 100 / last.cpu
	}
	return agents, measured
}

// mbPerAgent is the gateway's RSS above its idle RSS, per agent, at the
// run's largest fleet it kept up with (else its smallest).
func mbPerAgent(rows []gatewayRow, run *gatewayRun) float64 {
	var at *gatewayRow
	for i := range rows {
		if rows[i].run != run {
			continue
		}
		if at == nil || !rows[i].saturated() {
			at = &rows[i]
		}
	}
	if at == nil {
		return 0
	}
	return (at.rss - at.idleRSS) / float64(at.agents)
}

func gatewayReport(rows []gatewayRow, runs []*gatewayRun, took time.Duration) string {
	shipped, raised, flat, otlpOnly := runs[0], runs[1], runs[2], runs[3]
	var b strings.Builder
	fmt.Fprintf(&b, "The custom Collector (bin/otelcol-ebpfnet) running examples/otelcol/gateway.yaml as shipped (memory_limiter, groupbyattrs, batch; "+
		"Prometheus and OTLP/HTTP exporters), pinned to one CPU (taskset -c 0, so GOMAXPROCS=1), with only its variables set: listening on loopback, "+
		"its Prometheus exporter unscraped, its OTLP/HTTP backend a sink that discards. "+
		"The fleet (internal/bench/fleetgen, pinned to the other CPU) is that many simulated sidecars, each an OTel Go SDK MeterProvider of its own "+
		"(its own host.name and service.instance.id) with ebpfnet's own callback (metrics.Register) over a synthetic snapshot of %d interfaces "+
		"that carry every class both ways, a PeriodicReader every %v and otlpmetricgrpc in requests of at most 2048 points, as the sidecar sends; "+
		"the agents' starts are spread over the interval. Each fleet size is measured over %v after the last new agent's first export: "+
		"points from the gateway's own telemetry (otelcol_receiver_accepted_metric_points, otelcol_receiver_refused_metric_points, "+
		"otelcol_exporter_sent_metric_points of otlp_http), CPU and RSS from /proc; \"offered\" is what the agents' exports carried. "+
		"Each row of a gateway adds agents to the same process. The whole section took %v.\n\n", gatewayInterfaces, gatewayInterval, gatewayWindow, took.Round(time.Second))
	b.WriteString("| gateway | agents | points a collection | points/s offered | points/s accepted | points/s exported | gateway CPU (% of its core) | RSS | refused/dropped points/s | otlp_http queue | others on its CPU | fleet CPU (% of its core) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rows {
		refused := fmt.Sprintf("%.0f", r.refused+r.failed)
		if r.memRefused {
			refused += " (memory_limiter)"
		}
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.0f | %.0f | %.1f%% | %.0f MB | %s | %.0f | %.1f%% | %.1f%% |\n",
			r.run.name, r.agents, r.pointsPerAgent, r.offered, r.accepted, r.exported, r.cpu, r.rss, refused, r.queue, r.others, r.genCPU)
	}

	// Where the shipped gateway stopped keeping up.
	kept, failedAt := 0, 0
	for _, r := range rows {
		if r.run != shipped {
			continue
		}
		if r.saturated() {
			if failedAt == 0 {
				failedAt = r.agents
			}
		} else if failedAt == 0 {
			kept = r.agents
		}
	}
	cpuCap, cpuMeasured := capacity(rows, raised)
	flatCap, _ := capacity(rows, flat)
	otlpCap, otlpMeasured := capacity(rows, otlpOnly)
	how := func(measured bool) string {
		if measured {
			return "measured at saturation"
		}
		return "its largest fleet's CPU scaled to a whole core"
	}
	perAgent := float64(gatewayInterfaces*48+6) / gatewayInterval.Seconds()
	met := failedAt == 0 && cpuCap >= 100
	verdict := "not met"
	if met {
		verdict = "met"
	}
	fmt.Fprintf(&b, "\n**Target: one gateway core carries at least 100 agents of 100 interfaces at a 10 s interval — %s as shipped.** ", verdict)
	if failedAt > 0 {
		fmt.Fprintf(&b, "With the Deployment's memory_limiter (400 MiB) it kept up with %d agents and refused data from %d on: its Prometheus exporter keeps every series it has seen (%.0f an agent) in memory for 5 minutes, ", kept, failedAt, perAgent*gatewayInterval.Seconds())
		b.WriteString("so once the heap passes the limit it refuses nearly everything until series expire. ")
	}
	fmt.Fprintf(&b, "With the memory_limiter raised out of the way, CPU caps one core at about %.0f agents (%.0f points/s; %s), "+
		"and memory grows by about %.0f MB an agent. Without the Prometheus exporter (the same file with `exporters: [otlp_http]`), "+
		"one core carries about %.0f agents (%s) in flat memory.\n\n",
		cpuCap, cpuCap*perAgent, how(cpuMeasured), mbPerAgent(rows, raised), otlpCap, how(otlpMeasured))
	fmt.Fprintf(&b, "**Sizing rule** (agents of 100 interfaces, every class, a 10 s interval: %.0f points/s each): "+
		"with the Prometheus exporter, %.0f agents a gateway core and about %.0f MB of memory an agent (memory_limiter and container limit to match); "+
		"with the OTLP exporter alone, %.0f agents a core. Agents with split_by: [] (8 points an interface): about %.0f a core with the Prometheus exporter "+
		"(its CPU at 200 agents scaled). Plan replicas at 70%% of these (the HorizontalPodAutoscaler's target).\n\n",
		perAgent, cpuCap, mbPerAgent(rows, raised), otlpCap, flatCap)
	b.WriteString(gatewayBalancing)
	return b.String()
}

// gatewayBalancing is why adding replicas does not by itself spread the
// agents (docs/deploying.md, "Gateway sizing").
const gatewayBalancing = "**Spreading agents over replicas.** An agent's OTLP/gRPC connection is one long-lived HTTP/2 connection that carries every export. " +
	"A ClusterIP Service balances connections, not requests: kube-proxy picks a replica when the agent connects, and the agent stays there " +
	"until the connection breaks, so replicas the HorizontalPodAutoscaler adds take only new and reconnecting agents. A headless Service does not change that for the sidecar: " +
	"the OTel Go SDK's gRPC client resolves the name to every replica's address and, with gRPC's default pick_first policy, connects to one of them and stays " +
	"(it resolves again only when the connection fails), and the SDK's OTEL_EXPORTER_OTLP_* variables cannot choose round_robin. " +
	"The loadbalancing exporter (contrib; not in this build, and of development stability for metrics) applies only where the agent is a Collector: " +
	"it routes each batch by a key (routing_key: resource keeps each agent's series on one gateway) over a consistent-hash ring of the replicas, " +
	"which its dns (headless Service) or k8s resolver keeps current, so a new replica takes its share at once. For the sidecar, what spreads agents " +
	"is ending connections: the gateway's OTLP receiver can set keepalive.server_parameters.max_connection_age (say 10m, with max_connection_age_grace 30s), " +
	"after which each agent reconnects through the Service to a replica picked anew. That moves an agent's series between replicas, which a backend fed by OTLP takes in its stride, " +
	"but the gateways' own Prometheus endpoints would then serve a moved agent's series from two replicas until the old one's expire (5 minutes).\n"
