package datapath

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Pinned, counting goes on while no process holds the state, and a new
// process takes over the same totals and start time.
func TestPinnedStateOutlivesTheProcess(t *testing.T) {
	testenv.Privileged(t)
	for _, tc := range []struct {
		mode, pin string
	}{
		// A directory that does not exist yet, two levels down.
		{config.AttachTCX, "/sys/fs/bpf/ebpfnet-pin-tcx/node"},
		{config.AttachTC, "/sys/fs/bpf/ebpfnet-pin-tc"},
		{config.AttachXDP, "/sys/fs/bpf/ebpfnet-pin-xdp"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			testenv.RequireMode(t, tc.mode)
			p := testenv.NewPair(t, "pin"+tc.mode)
			cfg := cfgFor(tc.mode, p.Local)
			pinAt(t, &cfg, tc.pin)
			dirs := directions(tc.mode)

			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			kbase := testenv.LinkStats(t, p.Local)
			first, err := Open(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			start := snap(t, first).Find(p.Local).Start
			p.SendUDP(t, false, true, 100, payload)
			p.SendUDP(t, true, false, 50, payload)
			waitTotals(t, first, p, tc.mode, bpf.Counters{}, kbase, dirs...)
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			if got := testenv.Attachments(t, p.LocalIndex); len(got) != len(dirs) {
				t.Fatalf("after the first process closed: attached %v", got)
			}

			// Nobody holds the pins now; the program goes on counting.
			p.SendUDP(t, false, true, 70, payload)
			p.SendUDP(t, true, false, 30, payload)
			p.Ping(t, 5, payload)

			second := open(t, cfg)
			got, _ := waitTotals(t, second, p, tc.mode, bpf.Counters{}, kbase, dirs...)
			want := bpf.Count{Packets: 170, Bytes: 170 * testenv.UDPFrameLen(false, payload)}
			if got[bpf.Receive][bpf.ClassIPv4UDP] != want {
				t.Errorf("udp4 received across the restart: %+v, want %+v", got[bpf.Receive][bpf.ClassIPv4UDP], want)
			}
			if s := snap(t, second).Find(p.Local).Start; !s.Equal(start) {
				t.Errorf("start time %v after restart, want %v", s, start)
			}
			if got := testenv.Attachments(t, p.LocalIndex); len(got) != len(dirs) {
				t.Errorf("after the second open: attached %v, want one per direction", got)
			}

			// bpftool reads the pinned maps through their BTF.
			out, err := exec.Command("bpftool", "map", "dump", "pinned", filepath.Join(cfg.PinPath, "interfaces")).CombinedOutput()
			if err != nil {
				t.Fatalf("bpftool: %v: %s", err, out)
			}
			for _, want := range []string{`"name": "` + p.Local + `"`, `"start_unix_ns": `} {
				if !strings.Contains(string(out), want) {
					t.Errorf("bpftool dump lacks %s:\n%s", want, out)
				}
			}
			out, err = exec.Command("bpftool", "map", "dump", "pinned", filepath.Join(cfg.PinPath, "counters")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), `"ipv4_udp": {`) {
				t.Errorf("bpftool dump of counters (%v) lacks named classes:\n%.2000s", err, out)
			}

			// One owner at a time.
			if _, err := Open(cfg, nil); !errors.Is(err, bpf.ErrPinInUse) || !strings.Contains(err.Error(), fmt.Sprintf("PID %d", os.Getpid())) {
				t.Errorf("second open of a pin path in use: %v; want it refused naming PID %d", err, os.Getpid())
			}
			second.Close()

			// A different map size is a different layout: refused, clearly.
			other := cfg
			other.MaxInterfaces = 7
			if _, err := Open(other, nil); !errors.Is(err, bpf.ErrIncompatiblePin) || !strings.Contains(err.Error(), cfg.PinPath) {
				t.Errorf("max_interfaces changed under pins: %v", err)
			}

			// Unpinning lets the kernel detach the links.
			unpin(t, cfg.PinPath)
			if tc.mode != config.AttachTC {
				// The kernel releases them from a work queue.
				testenv.Eventually(testenv.Patience, func() bool { return len(testenv.Attachments(t, p.LocalIndex)) == 0 })
				requireDetached(t, p.LocalIndex)
			}
		})
	}
}

// Pinned state written under another layout version is refused, never mixed.
func TestPinnedLayoutMismatch(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "layout0")
	cfg := cfgFor(config.AttachAuto, p.Local)
	pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-layout")
	open(t, cfg).Close()

	setLayout(t, cfg.PinPath, bpf.Layout+1)
	_, err := Open(cfg, nil)
	if !errors.Is(err, bpf.ErrIncompatiblePin) || !strings.Contains(err.Error(), "layout") {
		t.Errorf("open over another layout: %v", err)
	}
}

// Pins of layout 1 (rows saying layout 1, no slot maps) are refused, with
// the directory named, and nothing is added to them.
func TestPinnedLayoutOneRefused(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "layout1")
	cfg := cfgFor(config.AttachAuto, p.Local)
	pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-layout1")
	open(t, cfg).Close()
	// What layout 1 left: its rows, no slot maps (and no links here, which
	// would keep the maps in use).
	setLayout(t, cfg.PinPath, 1)
	for _, name := range []string{"slots", "slots_hash", "links"} {
		if err := os.RemoveAll(filepath.Join(cfg.PinPath, name)); err != nil {
			t.Fatal(err)
		}
	}
	before, err := os.ReadDir(cfg.PinPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(cfg, nil)
	if !errors.Is(err, bpf.ErrIncompatiblePin) || !strings.Contains(err.Error(), cfg.PinPath) || !strings.Contains(err.Error(), "layout 1") {
		t.Errorf("open over layout 1 pins: %v", err)
	}
	if after, _ := os.ReadDir(cfg.PinPath); len(after) != len(before) {
		t.Errorf("open over layout 1 pins left %d entries in %s, there were %d", len(after), cfg.PinPath, len(before))
	}
}

// setLayout rewrites row 0 of the pinned interfaces map as if written under
// another layout.
func setLayout(t *testing.T, pinPath string, layout uint32) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, "interfaces"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var row bpf.InterfaceRow
	if err := m.Lookup(uint32(0), &row); err != nil || row.Ifindex == 0 {
		t.Fatalf("row 0: %+v, %v", row, err)
	}
	row.Layout = layout
	if err := m.Update(uint32(0), &row, ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
}

// pinAt gives cfg the pin path dir, unpinned when t ends.
func pinAt(t testing.TB, cfg *config.Config, dir string) {
	cfg.PinPath = dir
	t.Cleanup(func() { unpin(t, dir) })
}

// unpin removes what ebpfnet pinned, as a user stopping it for good would.
// (A BPF filesystem ebpfnet mounted itself also holds the kernel's
// maps.debug and progs.debug, which cannot be removed.)
func unpin(t testing.TB, dir string) {
	for _, name := range []string{"counters", "interfaces", "slots", "slots_hash", "links"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			t.Errorf("unpin: %v", err)
		}
	}
}
