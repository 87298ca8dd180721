//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// fpRun is the shared run's result.
type fpRun struct {
	window time.Duration
	cpus   int
	procs  []*fpProc
	byKey  map[string]*fpProc
	notes  []string // about the binaries measured
	bench  int64    // the bench's own CPU ticks in the window: receivers, scrapes, sampling
}

var fpShared struct {
	once sync.Once
	run  *fpRun
	err  error
}

// footprint runs the footprint's and the peers' processes once, in one
// window, whichever section asks first.
func footprint() (*fpRun, error) {
	fpShared.once.Do(func() { fpShared.run, fpShared.err = runFootprint() })
	return fpShared.run, fpShared.err
}

func runFootprint() (*fpRun, error) {
	dir, err := os.MkdirTemp("", "ebpfnet-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "ebpfnet")
	if out, err := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", bin, "./cmd/ebpfnet").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build: %v\n%s", err, out)
	}

	f, err := newFleet()
	if err != nil {
		return nil, err
	}
	defer f.close()
	if err := f.grow(footprintFleet); err != nil {
		return nil, err
	}

	procs, notes, err := footprintProcs(bin, dir)
	if err != nil {
		return nil, err
	}
	r := &fpRun{window: footprintWindow, cpus: runtime.NumCPU(), procs: procs, byKey: map[string]*fpProc{}, notes: notes}
	for _, p := range procs {
		r.byKey[p.key] = p
	}
	defer func() {
		for _, p := range procs {
			p.stop()
			if p.sink != nil {
				p.sink.srv.Stop()
			}
		}
	}()

	// Starts spread over an interval, so that the processes' collections
	// do not all land on the 2 CPUs at the same moment.
	for i, p := range procs {
		if p.cmd == nil {
			continue
		}
		if i > 0 {
			time.Sleep(footprintInterval / time.Duration(len(procs)))
		}
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	if err := waitPrograms(procs, f.names); err != nil {
		return nil, err
	}
	for _, p := range procs {
		if p.scrape != "" && p.running() {
			if err := waitScrape(p.scrape, 30*time.Second); err != nil {
				p.died = fmt.Sprintf("never served %s: %v", p.scrape, err)
				p.stop()
			}
		}
	}
	sent := time.Now()
	if err := f.send(); err != nil {
		return nil, err
	}
	// Warm: every process has collected (or been scraped) at least once
	// after the traffic, so that the window sees every series from its
	// first collection on, and no start-up.
	if err := waitCollected(procs, sent.Add(time.Second), 2*footprintInterval+30*time.Second); err != nil {
		return nil, err
	}

	t0 := time.Now()
	benchCPU0, err := cpuTicks(os.Getpid())
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		if p.running() {
			if p.cpu0, err = cpuTicks(p.cmd.Process.Pid); err != nil {
				return nil, err
			}
		}
	}
	var wg sync.WaitGroup
	stopSampling := make(chan struct{})
	wg.Add(1)
	go func() { // resident memory, every second
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			for _, p := range procs {
				if p.running() {
					if v, err := status(p.cmd.Process.Pid, "VmRSS"); err == nil {
						p.rss = append(p.rss, v)
					}
				}
			}
		}
	}()
	for _, p := range procs {
		if p.scrape == "" || !p.running() {
			continue
		}
		wg.Add(1)
		go func() { // scraped every interval, in the middle of each
			defer wg.Done()
			for k := range int(footprintWindow / footprintInterval) {
				time.Sleep(time.Until(t0.Add(footprintInterval/2 + time.Duration(k)*footprintInterval)))
				all, netdev, err := scrapeSeries(p.scrape)
				if err != nil {
					p.scrapeErr = err
					return
				}
				p.points = append(p.points, all)
				p.netdev = append(p.netdev, netdev)
			}
		}()
	}
	time.Sleep(time.Until(t0.Add(footprintWindow)))
	if benchCPU1, err := cpuTicks(os.Getpid()); err == nil {
		r.bench = benchCPU1 - benchCPU0
	}
	for _, p := range procs {
		if !p.running() {
			if p.cmd != nil && p.died == "" {
				p.died = fmt.Sprintf("exited during the run (%v): %s", p.waitErr, p.logTail())
			}
			continue
		}
		cpu1, err := cpuTicks(p.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		p.cpu = cpu1 - p.cpu0
		p.rssEnd, _ = status(p.cmd.Process.Pid, "VmRSS")
		p.hwm, _ = status(p.cmd.Process.Pid, "VmHWM")
		p.file, _ = status(p.cmd.Process.Pid, "RssFile")
		p.anon, _ = status(p.cmd.Process.Pid, "RssAnon")
	}
	close(stopSampling)
	wg.Wait()
	for _, p := range procs {
		if p.sink != nil {
			p.points, p.requests = p.sink.since(t0, t0.Add(footprintWindow))
		}
		if p.scrapeErr != nil && p.died == "" {
			p.died = fmt.Sprintf("scrape failed: %v", p.scrapeErr)
		}
		if p.died != "" && !p.peer {
			return nil, fmt.Errorf("%s: %s", p.name, p.died)
		}
	}
	return r, nil
}

// footprintProcs lists the processes of the shared run, ready to start:
// the footprint's sidecars and the peers. A peer that is not installed or
// not built has no command, and says why.
func footprintProcs(bin, dir string) ([]*fpProc, []string, error) {
	var procs []*fpProc
	var notes []string
	add := func(p *fpProc, maxRecv int) (*fpProc, error) {
		p.logPath = filepath.Join(dir, p.key+".log")
		procs = append(procs, p)
		if p.absent != "" {
			return p, nil
		}
		if maxRecv > 0 {
			s, err := listenSink(maxRecv)
			if err != nil {
				return nil, err
			}
			p.sink = s
		}
		return p, nil
	}
	sidecar := func(key, name, glob string, args, env []string) error {
		p, err := add(&fpProc{key: key, name: name, glob: glob}, 4<<20)
		if err != nil {
			return err
		}
		p.cmd = exec.Command(bin, append([]string{"--interfaces", glob, "--interval", footprintInterval.String()}, args...)...)
		p.cmd.Env = append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + p.sink.addr, "OTEL_EXPORTER_OTLP_INSECURE=true"}, env...)
		return nil
	}
	split := filepath.Join(dir, "split.yaml")
	if err := os.WriteFile(split, []byte("split_by: []\n"), 0o644); err != nil {
		return nil, nil, err
	}
	for _, s := range []struct {
		key, name, glob string
		args, env       []string
	}{
		{"ebpfnet100", "ebpfnet, 100 interfaces, every class", "bc00*", nil, nil},
		{"ebpfnet1000", "ebpfnet, 1000 interfaces, every class", "bc*", nil, nil},
		{"ebpfnet100gogc", "ebpfnet, 100 interfaces, every class, GOGC=100 (Go's default)", "bc00*", nil, []string{"GOGC=100"}},
		{"ebpfnet1000gogc", "ebpfnet, 1000 interfaces, every class, GOGC=100 (Go's default)", "bc*", nil, []string{"GOGC=100"}},
		{"ebpfnetsplit", "ebpfnet, 1000 interfaces, every class, split_by: []", "bc*", []string{"--config", split}, nil},
		{"baseline", "baseline: same binary, no interface selected", "", nil, nil},
	} {
		glob := s.glob
		if s.key == "baseline" {
			glob = "none-at-all"
		}
		if err := sidecar(s.key, s.name, glob, s.args, s.env); err != nil {
			return nil, nil, err
		}
		procs[len(procs)-1].glob = s.glob
	}

	// The receiver in the custom Collector (make otelcol).
	const otelcol = "bin/otelcol-ebpfnet"
	p, err := add(&fpProc{key: "receiver", name: "ebpfnet receiver in the Collector (" + otelcol + ")", glob: "bc*", absent: missing(otelcol, "not built: `make otelcol` (or `make peers`) builds it")}, 64<<20)
	if err != nil {
		return nil, nil, err
	}
	if p.absent == "" {
		cfg := filepath.Join(dir, "receiver.yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(receiverConfig, footprintInterval, p.sink.addr)), 0o644); err != nil {
			return nil, nil, err
		}
		p.cmd = exec.Command(otelcol, "--config", cfg)
		if note := staleness(otelcol); note != "" {
			notes = append(notes, note)
		}
	}

	// The Collector's hostmetrics network scraper (make peers).
	p, err = add(&fpProc{key: "hostmetrics", name: "Collector hostmetrics network scraper (" + hostmetricsVersion + ")", peer: true, absent: hostmetricsMissing()}, 64<<20)
	if err != nil {
		return nil, nil, err
	}
	if p.absent == "" {
		cfg := filepath.Join(dir, "hostmetrics.yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(hostmetricsConfig, footprintInterval, p.sink.addr)), 0o644); err != nil {
			return nil, nil, err
		}
		p.cmd = exec.Command(hostmetricsBin, "--config", cfg)
	}

	// node_exporter, netdev only, scraped by the bench itself.
	p, err = add(&fpProc{key: "node_exporter", name: "node_exporter, netdev only, scraped every 10 s", peer: true,
		absent: missing(nodeExporter, "not installed: `apt-get install -y prometheus-node-exporter` (`make peers` does)")}, 0)
	if err != nil {
		return nil, nil, err
	}
	if p.absent == "" {
		if out, err := exec.Command(nodeExporter, "--version").CombinedOutput(); err == nil {
			if v := strings.Fields(strings.SplitN(string(out), "\n", 2)[0]); len(v) >= 3 {
				p.name = "node_exporter " + strings.TrimSuffix(v[2], ",") + " (Debian), netdev only, scraped every 10 s"
			}
		}
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		p.scrape = "http://" + port + "/metrics"
		p.cmd = exec.Command(nodeExporter, "--collector.disable-defaults", "--collector.netdev", "--web.listen-address="+port)
	}
	return procs, notes, nil
}

// missing returns why, if the file at p is not there.
func missing(p, why string) string {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return why
	}
	return ""
}

// staleness warns when a binary is older than a file of the module it is
// built from: the receiver's packages in this module (go list -deps), and
// go.mod, go.sum and builder-config.yaml.
func staleness(bin string) string {
	st, err := os.Stat(bin)
	if err != nil {
		return ""
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./receiver").Output()
	if err != nil {
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	files := []string{"go.mod", "go.sum", "builder-config.yaml"}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(wd, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // another module's
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !e.IsDir() && !strings.HasSuffix(e.Name(), "_test.go") {
				files = append(files, filepath.Join(rel, e.Name()))
			}
		}
	}
	newest, newestTime := "", st.ModTime()
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(newestTime) {
			newest, newestTime = f, fi.ModTime()
		}
	}
	if newest == "" {
		return ""
	}
	return fmt.Sprintf("%s was built at %s, before %s changed (%s): `make otelcol` rebuilds it.",
		bin, st.ModTime().UTC().Format(time.DateTime), newest, newestTime.UTC().Format(time.DateTime))
}
