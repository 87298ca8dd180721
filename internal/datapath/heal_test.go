package datapath

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// removeHooks does what another tool does to ebpfnet's hooks on the
// interface: tc qdisc del dev X clsact (a CNI plugin resetting an
// interface), or bpftool link detach for tcx and XDP links.
func removeHooks(t *testing.T, index int, mode string) {
	t.Helper()
	if mode == config.AttachTC {
		qdisc := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
			QdiscType:  "clsact",
		}
		mustDo(t, netlink.QdiscDel(qdisc))
		return
	}
	if testenv.DetachLinks(t, index) == 0 {
		t.Fatalf("no link of ebpfnet's to detach on ifindex %d", index)
	}
}

// A hook someone else removes is put back, counted and logged once per
// interface and cause; ebpfnet.interfaces.attached says whether it counts.
// What was sent while the hook was gone is at most missing (the kernel's
// counters keep the truth): the gap is bounded by that traffic, and after
// the restore every frame counts again, exactly.
func TestRestoresRemovedHooks(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		for _, pinned := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pinned=%v", mode, pinned), func(t *testing.T) {
				testenv.RequireMode(t, mode)
				name := "heal" + mode
				if pinned {
					name += "p"
				}
				p := testenv.NewPair(t, name)
				cfg := cfgFor(mode, p.Local)
				if pinned {
					pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-heal-"+mode)
				}
				var log logBuffer
				d, err := Open(cfg, slog.New(slog.NewTextHandler(&log, nil)))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				dirs := directions(mode)
				testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
				base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)

				for round := 1; round <= 2; round++ {
					p.SendUDP(t, false, true, 30, payload)
					p.SendUDP(t, false, false, 20, payload)
					waitTotals(t, d, p, mode, base, kbase, dirs...)

					// Removed, then traffic while it may still be gone: the
					// gap is at most that traffic. (Frames, not datagrams
					// that must arrive: adding or deleting a clsact qdisc
					// stops an interface's transmit queues for a moment,
					// and what is sent then is dropped, uncounted.)
					removeHooks(t, p.LocalIndex, mode)
					const gone = 15
					p.SendRawLossy(t, true, testenv.VLANFrame(p.LocalMAC, p.PeerMAC, nil, payload), gone)
					p.SendRawLossy(t, false, testenv.VLANFrame(p.PeerMAC, p.LocalMAC, nil, payload), gone)
					testenv.WaitFor(t, "the hooks to be restored", func() bool {
						s := snap(t, d)
						return s.HooksRestored == uint64(round*len(dirs)) && s.Counting() == 1 && len(ours(t, d, p.LocalIndex)) == len(dirs)
					})
					got := sub(counters(t, d, p.Local), base)
					k := kernelCounts(mode, testenv.LinkStats(t, p.Local).Sub(kbase))
					for _, dir := range dirs {
						if missed := k[dir].Packets - got.Total(dir).Packets; missed > gone*uint64(round) {
							t.Errorf("round %d, %s: %d frames missed, at most the %d sent while hooks were gone", round, dir, missed, gone*round)
						}
					}
					// From here on every frame counts again, exactly.
					base, kbase = counters(t, d, p.Local), testenv.LinkStats(t, p.Local)
					p.SendUDP(t, false, true, 25, payload)
					p.SendUDP(t, false, false, 25, payload)
					waitTotals(t, d, p, mode, base, kbase, dirs...)
					base, kbase = counters(t, d, p.Local), testenv.LinkStats(t, p.Local)
				}
				cause := map[string]string{config.AttachTC: "tc qdisc removed"}[mode]
				if cause == "" {
					cause = "link detached"
				}
				if n := strings.Count(log.String(), "restored it"); n != 1 || !strings.Contains(log.String(), "cause=\""+cause+"\"") {
					t.Errorf("logged %d restores, want 1 (twice removed, once logged) with cause %q:\n%s", n, cause, log.String())
				}
			})
		}
	}
}

// Down and up again: the hooks stay, nothing is added or restored, and
// counting is exact through it.
func TestLinkDownUp(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "updn"+mode)
			d := open(t, cfgFor(mode, p.Local))
			dirs := directions(mode)
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)
			p.SendUDP(t, false, true, 20, payload)
			l, err := netlink.LinkByIndex(p.LocalIndex)
			mustDo(t, err)
			mustDo(t, netlink.LinkSetDown(l))
			mustDo(t, netlink.LinkSetUp(l))
			p.Reconnect(t)
			p.SendUDP(t, false, true, 20, payload)
			p.SendUDP(t, false, false, 10, payload)
			waitTotals(t, d, p, mode, base, kbase, dirs...)
			s := snap(t, d)
			if s.HooksRestored != 0 || s.Counting() != 1 || len(ours(t, d, p.LocalIndex)) != len(dirs) {
				t.Errorf("after down/up: restored %d, counting %d, hooks %v", s.HooksRestored, s.Counting(), testenv.Attachments(t, p.LocalIndex))
			}
			if got := sub(counters(t, d, p.Local), base); got.Total(bpf.Receive).Packets < 40 {
				t.Errorf("received %d, sent 40", got.Total(bpf.Receive).Packets)
			}
		})
	}
}

// A pin someone removed (here the interfaces map, with its rows) cannot
// make ebpfnet count twice: the filters of the earlier process still count
// into the pinned counters, and are recognised by the counters map they
// name, whatever the rows say, and removed.
func TestLostPinDoesNotDoubleCount(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "lostpin0")
	cfg := cfgFor(config.AttachTC, p.Local)
	pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-lost")
	first, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, first.Close()) // pinned: its filters go on counting
	mustDo(t, os.Remove(filepath.Join(cfg.PinPath, "interfaces")))

	d := open(t, cfg)
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)
	p.Ping(t, 100, payload)
	got, _ := waitTotals(t, d, p, config.AttachTC, base, kbase, bpf.Receive, bpf.Transmit)
	if n := got.Total(bpf.Receive).Packets; n != 100 {
		t.Errorf("100 pings received, counted %d", n)
	}
	if all := testenv.Attachments(t, p.LocalIndex); len(all) != 2 || len(ours(t, d, p.LocalIndex)) != 2 {
		t.Errorf("hooks %v: want this process's two filters and nothing else", all)
	}
}
