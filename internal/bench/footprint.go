//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the Collector's OTLP exporter compresses by default
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

// fpProc is one process measured in the shared footprint window.
type fpProc struct {
	key, name string
	glob      string // the interfaces it attaches ebpfnet's programs to, "" for none
	peer      bool   // not ebpfnet's: when it is missing or dies, its row says so
	absent    string // why it did not run

	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
	sink    *fpSink // where it exports OTLP; nil for node_exporter, which is scraped
	scrape  string  // node_exporter's /metrics URL

	cpu0, cpu               int64   // ticks: at the window's start; in the window
	rss                     []int64 // kB, sampled every second in the window
	rssEnd, file, anon, hwm int64   // kB, at the window's end
	points                  []int   // each collection's points (or each scrape's series) in the window
	netdev                  []int   // node_exporter: each scrape's node_network_* series
	requests                int     // OTLP requests in the window
	scrapeErr               error
	died                    string // how it ended early, if it did
}

func (p *fpProc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logTail is the end of what the process wrote, for errors.
func (p *fpProc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "..." + s[len(s)-1500:]
	}
	return s
}

func (p *fpProc) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *fpProc) cpuPercent(window time.Duration) float64 {
	return float64(p.cpu) / ticksPerSecond / window.Seconds() * 100
}

func (p *fpProc) pointsCell() string {
	if len(p.points) == 0 {
		return "-"
	}
	return thousands(medianInt(p.points))
}

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

func (p *fpProc) start() error {
	logf, err := os.Create(p.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	return nil
}

// waitPrograms waits until every running ebpfnet process has its programs
// on every interface it selects, both directions, so that the traffic sent
// next is counted by all of them.
func waitPrograms(procs []*fpProc, names []string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		short := ""
		for _, name := range names {
			want := 0
			for _, p := range procs {
				if ok, _ := path.Match(p.glob, name); ok && p.glob != "" && p.running() {
					want++
				}
			}
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				q, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
				if err != nil {
					return fmt.Errorf("query %s: %w", name, err)
				}
				if len(q.Programs) < want {
					short = fmt.Sprintf("%s has %d of %d programs (%v)", name, len(q.Programs), want, at)
				}
			}
			if short != "" {
				break
			}
		}
		if short == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 2 minutes, %s", short)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range procs {
		if p.cmd != nil && !p.running() && !p.peer {
			return fmt.Errorf("%s exited at start (%v): %s", p.name, p.waitErr, p.logTail())
		}
	}
	return nil
}

// waitCollected waits until every running process has exported a
// collection that began after since, and node_exporter served a scrape.
func waitCollected(procs []*fpProc, since time.Time, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, p := range procs {
		if p.scrape != "" && p.running() {
			time.Sleep(time.Until(since))
			if _, _, err := scrapeSeries(p.scrape); err != nil {
				p.died = fmt.Sprintf("scrape failed: %v", err)
				p.stop()
			}
		}
	}
	for {
		waiting := ""
		for _, p := range procs {
			if p.sink != nil && p.running() && !p.sink.collectedSince(since) {
				waiting = p.name
			}
			if p.cmd != nil && !p.running() && p.died == "" {
				p.died = fmt.Sprintf("exited at start (%v): %s", p.waitErr, p.logTail())
				if !p.peer {
					return fmt.Errorf("%s: %s", p.name, p.died)
				}
			}
		}
		if waiting == "" {
			return nil
		}
		if time.Now().After(deadline) {
			p := procs[slices.IndexFunc(procs, func(p *fpProc) bool { return p.name == waiting })]
			if p.peer {
				p.died = fmt.Sprintf("exported nothing in %v: %s", limit, p.logTail())
				p.stop()
				continue
			}
			return fmt.Errorf("%s exported nothing in %v: %s", waiting, limit, p.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fpSink is an OTLP/gRPC metrics receiver that keeps nothing but how many
// points each collection brought: requests less than a third of an
// interval apart belong to one collection.
type fpSink struct {
	pmetricotlp.UnimplementedGRPCServer
	addr string
	srv  *grpc.Server

	mu    sync.Mutex
	colls []fpCollection
}

type fpCollection struct {
	first, last      time.Time
	points, requests int
}

func listenSink(maxRecv int) (*fpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &fpSink{addr: ln.Addr().String(), srv: grpc.NewServer(grpc.MaxRecvMsgSize(maxRecv))}
	pmetricotlp.RegisterGRPCServer(s.srv, s)
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Export counts the request's points.
func (s *fpSink) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	n := req.Metrics().DataPointCount()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := len(s.colls); k == 0 || now.Sub(s.colls[k-1].last) > footprintInterval/3 {
		s.colls = append(s.colls, fpCollection{first: now})
	}
	c := &s.colls[len(s.colls)-1]
	c.last = now
	c.points += n
	c.requests++
	return pmetricotlp.NewExportResponse(), nil
}

func (s *fpSink) collectedSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Complete: another began after it, or it has been quiet for a while.
	for i, c := range s.colls {
		if !c.first.Before(t) && (i < len(s.colls)-1 || time.Since(c.last) > 2*time.Second) {
			return true
		}
	}
	return false
}

// since returns the points of each collection that began in [from, to),
// and their requests.
func (s *fpSink) since(from, to time.Time) (points []int, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.colls {
		if !c.first.Before(from) && c.first.Before(to) {
			points = append(points, c.points)
			requests += c.requests
		}
	}
	return points, requests
}

// scrapeSeries GETs a Prometheus /metrics page as a scraper would (gzip
// accepted), and counts its samples, and those of node_network_* metrics.
func scrapeSeries(url string) (all, netdev int, err error) {
	resp, err := fpHTTP.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		all++
		if strings.HasPrefix(string(line), "node_network_") {
			netdev++
		}
	}
	return all, netdev, sc.Err()
}

var fpHTTP = &http.Client{Timeout: 10 * time.Second}

func waitScrape(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, _, err := scrapeSeries(url)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
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

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func medianInt(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianInt64(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
