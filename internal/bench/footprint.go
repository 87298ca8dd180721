//go:build linux

package main

import (
	"fmt"
	"strings"
	"time"
)

const (
	footprintInterval = 10 * time.Second // every process collects (or is scraped) this often
	// footprintWindow is a whole number of intervals, so that every
	// process collects as many times in it wherever its own phase falls.
	footprintWindow = 12 * footprintInterval
	// footprintFleet is how many veths the 1000-interface processes count.
	footprintFleet = 1000
)

// benchFootprint runs the built sidecar on 100 and on 1000 veth interfaces,
// every one with every class in both directions (22 series per counter
// metric), with a 10 s interval, exporting OTLP/gRPC to a local receiver,
// beside the same binary selecting no interface (the SDK and exporter
// alone), and reads their resident memory and CPU time from /proc. It
// shares its run, and so its window, with the peers (benchPeers).
func benchFootprint() (string, error) {
	r, err := footprint()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The built sidecar, OTLP/gRPC to a local receiver every %v, measured over %v after start-up, every interface with one frame of each of the 11 classes in each direction; "+
		"CPU from /proc/PID/stat, memory from /proc/PID/status. Measured in one window with the peers of the next section (%d processes at once on %d CPUs, their starts spread over an interval).\n\n",
		footprintInterval, r.window, len(r.procs), r.cpus)
	b.WriteString("| process | points a collection | CPU (% of one core) | RSS now | of which the binary's pages (RssFile) | of which heap, stacks and the rest (RssAnon) | RSS peak |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	requests := 0
	for _, key := range []string{"ebpfnet100", "ebpfnet1000", "ebpfnet100gogc", "ebpfnet1000gogc", "ebpfnetsplit", "baseline"} {
		p := r.byKey[key]
		requests += p.requests
		fmt.Fprintf(&b, "| %s | %s | %.2f%% | %s | %s | %s | %s |\n", p.name, p.pointsCell(), p.cpuPercent(r.window),
			mb(p.rssEnd), mb(p.file), mb(p.anon), mb(p.hwm))
	}
	fmt.Fprintf(&b, "\nThe receivers (one a process, each a gRPC server with the default 4 MiB request limit, as a Collector's OTLP receiver) got %d requests from these sidecars in the window: the sidecar sends a collection in requests of at most 2048 points. "+
		"The sidecar runs Go's garbage collector at GOGC=50 unless GOGC is set; GOGC=100 (Go's default) trades memory for a little CPU. Targets (issue 9): 100 interfaces at most 30 MB resident; 1000 interfaces at most 64 MB and 1%% of a core. "+
		"CPU time is counted in 10 ms ticks: over %v, one tick is %.3f%% of a core.\n", requests, r.window, 100/ticksPerSecond/r.window.Seconds())
	return b.String(), nil
}
