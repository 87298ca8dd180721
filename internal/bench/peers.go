//go:build linux

package main

import (
	"fmt"
	"os"
	"strings"
)

// The peers beside ebpfnet, run by `make peers` (the Makefile): Debian's
// node_exporter, and a Collector with the hostmetrics receiver built from
// internal/bench/hostmetrics/builder-config.yaml.
const (
	nodeExporter       = "/usr/bin/prometheus-node-exporter"
	hostmetricsVersion = "v0.160.0"
	hostmetricsBin     = "bin/otelcol-hostmetrics-" + hostmetricsVersion
)

// receiverConfig is the custom Collector's: the ebpfnet receiver on the
// fleet, straight to the OTLP exporter; its own telemetry off.
const receiverConfig = `receivers:
  ebpfnet:
    collection_interval: %v
    interfaces:
      include: ["bc*"]
exporters:
  otlp_grpc:
    endpoint: %s
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [ebpfnet]
      exporters: [otlp_grpc]
`

// hostmetricsConfig is the hostmetrics Collector's: the network scraper on
// the fleet's interfaces, straight to the OTLP exporter.
const hostmetricsConfig = `receivers:
  host_metrics:
    collection_interval: %v
    scrapers:
      network:
        include:
          interfaces: ['^bc[0-9]{4}$']
          match_type: regexp
exporters:
  otlp_grpc:
    endpoint: %s
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [host_metrics]
      exporters: [otlp_grpc]
`

// hostmetricsMissing says why there is no hostmetrics Collector: not built
// yet, or the build's own words from make peers' log.
func hostmetricsMissing() string {
	if _, err := os.Stat(hostmetricsBin); err == nil {
		return ""
	}
	log, err := os.ReadFile(hostmetricsBin + ".log")
	if err != nil {
		return "not built: `make peers` builds it"
	}
	var lines []string
	for _, l := range strings.Split(string(log), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	// The lines that carry the error, else the last ones.
	var errs []string
	for _, l := range lines {
		low := strings.ToLower(l)
		if strings.HasPrefix(low, "go: downloading") {
			continue
		}
		for _, w := range []string{"error", "fail", "forbidden", "not found", "not available", "refus", "cannot", "unknown"} {
			if strings.Contains(low, w) {
				if len(l) > 300 {
					l = l[:300] + "..."
				}
				errs = append(errs, l)
				break
			}
		}
	}
	if len(errs) == 0 {
		errs = lines[max(0, len(lines)-3):]
	}
	if len(errs) > 3 {
		errs = errs[len(errs)-3:]
	}
	why := strings.Join(errs, " / ")
	if len(why) > 1000 {
		why = why[:1000] + "..."
	}
	return fmt.Sprintf("did not build (`make peers`; %s.log): %s", hostmetricsBin, why)
}

// benchPeers sets ebpfnet beside its peers, measured in the footprint's
// run: the same 1000 veths, every class on every one, the same interval,
// the same window.
func benchPeers() (string, error) {
	r, err := footprint()
	if err != nil {
		return "", err
	}
	rows := []struct{ key, name string }{
		{"ebpfnet1000", "ebpfnet sidecar, default (every class split)"},
		{"ebpfnetsplit", "ebpfnet sidecar, `split_by: []`"},
		{"receiver", ""},
		{"hostmetrics", ""},
		{"node_exporter", ""},
	}
	ne := r.byKey["node_exporter"]
	neOK := ne.measured()
	var b strings.Builder
	fmt.Fprintf(&b, "%d veths in the bench's network namespace, every one with one frame of each of the 11 classes in each direction, every process collecting (or scraped) every %v, "+
		"all running at once (with the footprint's sidecars: %d processes on %d CPUs, starts spread over an interval), CPU and RSS over the same %v after start-up. "+
		"CPU from /proc/PID/stat (utime + stime, 10 ms ticks: one is %.3f%% of a core over the window); RSS from /proc/PID/status, sampled every second: median over the window, and its maximum.\n\n",
		footprintFleet, footprintInterval, len(r.procs), r.cpus, r.window, 100/ticksPerSecond/r.window.Seconds())
	b.WriteString("| process | points (or series) a collection | CPU (% of one core) | RSS (median; max) | CPU / node_exporter's | RSS / node_exporter's |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, row := range rows {
		p := r.byKey[row.key]
		name := row.name
		if name == "" {
			name = p.name
		}
		if !p.measured() {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | |\n", name, cell(p.why()))
			continue
		}
		points := p.pointsCell()
		if p.scrape != "" {
			points = fmt.Sprintf("%s series (%s node_network_*)", points, thousands(medianInt(p.netdev)))
		}
		cpuRatio, rssRatio := "-", "-"
		if neOK && p != ne {
			cpuRatio = ratioCell(float64(p.cpu), float64(ne.cpu))
			rssRatio = ratioCell(float64(p.rssMedian()), float64(ne.rssMedian()))
		} else if p == ne {
			cpuRatio, rssRatio = "1x", "1x"
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f%% | %s (%s) | %s | %s |\n", name, points, p.cpuPercent(r.window),
			mb(p.rssMedian()), mb(p.rssMax()), cpuRatio, rssRatio)
	}

	b.WriteString("\nTargets (issue 20), at 1000 interfaces, same traffic, same interval, same window:\n\n")
	side, split, recv := r.byKey["ebpfnet1000"], r.byKey["ebpfnetsplit"], r.byKey["receiver"]
	vsNE := func(target string, p *fpProc, limit float64, extra string) {
		switch {
		case !p.measured():
			fmt.Fprintf(&b, "- %s: not measured (%s).\n", target, cell(p.why()))
		case !neOK:
			fmt.Fprintf(&b, "- %s: %.2f%%, node_exporter not measured (%s).\n", target, p.cpuPercent(r.window), cell(ne.why()))
		default:
			x := float64(p.cpu) / float64(ne.cpu)
			fmt.Fprintf(&b, "- %s: %.2f%% / %.2f%% = %.2fx: %s%s.\n", target, p.cpuPercent(r.window), ne.cpuPercent(r.window), x, met(x <= limit), extra)
		}
	}
	extra := ""
	if split.measured() && neOK {
		extra = fmt.Sprintf(" (with `split_by: []`: %.2fx)", float64(split.cpu)/float64(ne.cpu))
	}
	vsNE("sidecar CPU at most 0.5x node_exporter's", side, 0.5, extra)
	vsNE("receiver CPU at most 0.25x node_exporter's", recv, 0.25, "")
	if side.measured() && neOK {
		x := float64(side.rssMedian()) / float64(ne.rssMedian())
		fmt.Fprintf(&b, "- sidecar RSS at most node_exporter's: %s / %s = %.2fx (max %s / %s): %s.\n",
			mb(side.rssMedian()), mb(ne.rssMedian()), x, mb(side.rssMax()), mb(ne.rssMax()), met(x <= 1))
	} else {
		fmt.Fprintf(&b, "- sidecar RSS at most node_exporter's: not measured (%s).\n", cell(side.why()+ne.why()))
	}
	fmt.Fprintf(&b, "- every class active, sidecar at most 1.5%% of a core: %.2f%%: %s.\n", side.cpuPercent(r.window), met(side.cpuPercent(r.window) <= 1.5))
	fmt.Fprintf(&b, "- `split_by: []`, sidecar at most 0.3%% of a core: %.2f%%: %s.\n", split.cpuPercent(r.window), met(split.cpuPercent(r.window) <= 0.3))

	fmt.Fprintf(&b, "\nThe sidecars export OTLP/gRPC to receivers with the default 4 MiB request limit; the Collectors (receiver -> otlp_grpc exporter, tls insecure, no processor, their own telemetry off) export to receivers that take 64 MiB, "+
		"as the Collector sends a collection in one request (48,000 points are about 6.7 MB). The hostmetrics Collector is contrib's hostmetricsreceiver %s with the otlp exporter, built with the %s builder "+
		"(v0.165.0 needs scrapertest v0.165.0, which the Go module proxy refuses), its network scraper on `^bc[0-9]{4}$` (regexp); its points include system.network.connections. "+
		"node_exporter is scraped by the bench (an HTTP GET of /metrics, gzip accepted as Prometheus asks, series counted), in the middle of each interval; the bench itself (these receivers, the scrapes, the sampling) used %.2f%% of a core in the window.\n",
		hostmetricsVersion, hostmetricsVersion, float64(r.bench)/ticksPerSecond/r.window.Seconds()*100)
	for _, n := range r.notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String(), nil
}

// measured reports whether p ran through the window.
func (p *fpProc) measured() bool { return p.absent == "" && p.died == "" && p.cmd != nil }

func (p *fpProc) why() string {
	if p.absent != "" {
		return p.absent
	}
	return p.died
}

func (p *fpProc) rssMedian() int64 {
	if len(p.rss) == 0 {
		return p.rssEnd
	}
	return medianInt64(p.rss)
}

func (p *fpProc) rssMax() int64 {
	m := p.rssEnd
	for _, v := range p.rss {
		m = max(m, v)
	}
	return m
}

func ratioCell(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// cell makes text safe in a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}
