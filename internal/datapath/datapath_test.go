package datapath

import (
	"strings"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestCountsExactly(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "exact"+mode)
			d := open(t, cfgFor(mode, p.Local))
			dirs := directions(mode)
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)

			e := sendMixed(t, p, mode != config.AttachXDP)

			got, k := waitTotals(t, d, p, mode, base, kbase, dirs...)
			checkClasses(t, got, e, kernelCounts(mode, k), dirs...)
			if mode == config.AttachXDP && got.Total(bpf.Transmit) != (bpf.Count{}) {
				t.Errorf("xdp counted transmit: %+v", got.Total(bpf.Transmit))
			}
		})
	}
}

func TestCountsFromEveryCPUAtOnce(t *testing.T) {
	testenv.Privileged(t)
	var cpus []int
	for cpu := range 2 {
		cpus = append(cpus, cpu)
	}
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "cpus"+mode)
			d := open(t, cfgFor(mode, p.Local))
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)

			const n = 5000
			p.SendUDPOnCPUs(t, cpus, n, payload)

			got, _ := waitTotals(t, d, p, mode, base, kbase, bpf.Receive)
			want := bpf.Count{Packets: uint64(n * len(cpus)), Bytes: uint64(n*len(cpus)) * testenv.UDPFrameLen(false, payload)}
			if got[bpf.Receive][bpf.ClassIPv4UDP] != want {
				t.Errorf("counted %+v, sent %+v", got[bpf.Receive][bpf.ClassIPv4UDP], want)
			}
		})
	}
}

func TestCloseDetaches(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "close"+mode)
			d := open(t, cfgFor(mode, p.Local))
			if got := testenv.Attachments(t, p.LocalIndex); len(got) == 0 {
				t.Fatalf("nothing attached after open")
			} else {
				t.Logf("attached: %v", got)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Errorf("second close: %v", err)
			}
			requireDetached(t, p.LocalIndex)
			if err := d.Snapshot(&snapshot.Snapshot{}); err == nil {
				t.Error("snapshot after close succeeded")
			}
		})
	}
}

func TestBadConfigLoadsNothing(t *testing.T) {
	testenv.Privileged(t)
	before := countBPFObjects(t)
	for name, mutate := range map[string]func(*config.Config){
		"glob":           func(c *config.Config) { c.Interfaces.Include = []string{"["} },
		"regex":          func(c *config.Config) { c.Interfaces.Exclude = []string{"/(/"} },
		"attach":         func(c *config.Config) { c.Attach = "sockops" },
		"xdp transmit":   func(c *config.Config) { c.Attach = config.AttachXDP },
		"direction":      func(c *config.Config) { c.Directions = []string{"both"} },
		"max interfaces": func(c *config.Config) { c.MaxInterfaces = -1 },
		"pin path":       func(c *config.Config) { c.PinPath = "bpf/ebpfnet" },
	} {
		cfg := config.Default()
		mutate(&cfg)
		if _, err := Open(cfg, nil); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: want one line, got %v", name, err)
		}
	}
	if after := countBPFObjects(t); after != before {
		t.Errorf("bad configs left %d BPF objects open", after-before)
	}
}
