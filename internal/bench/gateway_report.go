//go:build linux

package main

import (
	"fmt"
	"strings"
	"time"
)

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
	shipped, prom, raised, flat := runs[0], runs[1], runs[2], runs[3]
	var b strings.Builder
	fmt.Fprintf(&b, "The custom Collector (bin/otelcol-ebpfnet) running examples/otelcol/gateway.yaml (memory_limiter, groupbyattrs, batch; "+
		"the OTLP/HTTP exporter as shipped, with its Prometheus exporter too where the row says so: GATEWAY_EXPORTERS='[prometheus, otlp_http]'), pinned to one CPU (taskset -c 0, so GOMAXPROCS=1), with only its variables set: listening on loopback, "+
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

	// Where the gateway with its Prometheus exporter and the Deployment's
	// memory_limiter stopped keeping up.
	kept, failedAt := 0, 0
	for _, r := range rows {
		if r.run != prom {
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
	shippedFailed := false
	for _, r := range rows {
		shippedFailed = shippedFailed || (r.run == shipped && r.saturated())
	}
	otlpCap, otlpMeasured := capacity(rows, shipped)
	cpuCap, cpuMeasured := capacity(rows, raised)
	flatCap, _ := capacity(rows, flat)
	how := func(measured bool) string {
		if measured {
			return "measured at saturation"
		}
		return "its largest fleet's CPU scaled to a whole core"
	}
	perAgent := float64(gatewayInterfaces*48+6) / gatewayInterval.Seconds()
	verdict := "not met"
	if !shippedFailed && otlpCap >= 100 {
		verdict = "met"
	}
	fmt.Fprintf(&b, "\n**Target: one gateway core carries at least 100 agents of 100 interfaces at a 10 s interval — %s as shipped** "+
		"(OTLP only): one core carries about %.0f agents (%s) in flat memory. ", verdict, otlpCap, how(otlpMeasured))
	b.WriteString("With its Prometheus exporter turned on, it is not: ")
	if failedAt > 0 {
		fmt.Fprintf(&b, "with the Deployment's memory_limiter (400 MiB) it kept up with %d agents and refused data from %d on, as the exporter keeps every series it has seen (%.0f an agent) in memory for 5 minutes; ", kept, failedAt, perAgent*gatewayInterval.Seconds())
	}
	fmt.Fprintf(&b, "with the memory_limiter raised out of the way, CPU caps one core at about %.0f agents (%.0f points/s; %s), "+
		"and memory grows by about %.0f MB an agent.\n\n",
		cpuCap, cpuCap*perAgent, how(cpuMeasured), mbPerAgent(rows, raised))
	fmt.Fprintf(&b, "**Sizing rule** (agents of 100 interfaces, every class, a 10 s interval: %.0f points/s each): "+
		"as shipped (OTLP only), %.0f agents a gateway core in flat memory; with the Prometheus exporter, %.0f agents a core and about %.0f MB of memory an agent "+
		"(memory_limiter and container limit to match). Agents with split_by: [] (8 points an interface): about %.0f a core even with the Prometheus exporter "+
		"(its CPU at 200 agents scaled). Plan replicas at 70%% of these (the HorizontalPodAutoscaler's target).\n\n",
		perAgent, otlpCap, cpuCap, mbPerAgent(rows, raised), flatCap)
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
	"is ending connections: the shipped gateway's OTLP receiver sets keepalive.server_parameters.max_connection_age (10m, with max_connection_age_grace 30s), " +
	"after which each agent reconnects through the Service to a replica picked anew (from the components' documented behaviour; no cluster here to measure it). That moves an agent's series between replicas, which a backend fed by OTLP takes in its stride, " +
	"but the gateways' own Prometheus endpoints, where turned on, would then serve a moved agent's series from two replicas until the old one's expire (5 minutes).\n"
