//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

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
