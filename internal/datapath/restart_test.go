package datapath

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Interfaces renamed, moved to another namespace or deleted while no
// process held the pins are detached at the next start, before their rows
// go to other interfaces: their traffic is never credited to another.
func TestReconcileOnStart(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		for _, change := range []string{"rename", "move", "delete"} {
			t.Run(mode+"/"+change, func(t *testing.T) {
				testenv.RequireMode(t, mode)
				x := testenv.NewPair(t, "rcx"+mode[:2]+change[:2])
				cfg := cfgFor(mode, "rc*")
				pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-reconcile")
				dirs := directions(mode)

				first, err := Open(cfg, testLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				x.SendUDP(t, false, true, 10, payload)
				if err := first.Close(); err != nil {
					t.Fatal(err)
				}
				var elsewhere netns.NsHandle
				switch change {
				case "rename":
					l, _ := netlink.LinkByIndex(x.LocalIndex)
					mustDo(t, netlink.LinkSetDown(l))
					mustDo(t, netlink.LinkSetName(l, "zz"+mode+"ren"))
					t.Cleanup(func() { _ = netlink.LinkDel(l) })
					mustDo(t, netlink.LinkSetUp(l))
					// Its addresses are the new pair's too: leave routing to that.
					addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
					for _, a := range addrs {
						mustDo(t, netlink.AddrDel(l, &a))
					}
				case "move":
					elsewhere = testenv.NewNetns(t)
					l, _ := netlink.LinkByIndex(x.LocalIndex)
					mustDo(t, netlink.LinkSetNsFd(l, int(elsewhere)))
					// Up there, so that the traffic sent to it below arrives.
					mustDo(t, testenv.RunIn(elsewhere, func() error {
						l, err := netlink.LinkByName(x.Local)
						if err != nil {
							return err
						}
						return netlink.LinkSetUp(l)
					}))
				case "delete":
					x.Close()
				}

				// A new interface that will be given the freed row.
				y := testenv.NewPair(t, "rcy"+mode[:2]+change[:2])
				testenv.WaitQuiet(t, y.Local, 300*time.Millisecond)
				kbase := testenv.LinkStats(t, y.Local)
				second := open(t, cfg)
				if n := len(snap(t, second).Interfaces); n != 1 {
					t.Fatalf("%d interfaces attached after the restart, want 1 (the new one)", n)
				}
				rows, err := second.objs.ReadInterfaces()
				if err != nil {
					t.Fatal(err)
				}
				if rows[0].InterfaceName() != y.Local {
					t.Errorf("row 0 belongs to %q, want the new interface %s", rows[0].InterfaceName(), y.Local)
				}

				// Nothing of ebpfnet's is left on the changed interface. (A
				// link whose pin is removed goes when the kernel frees the
				// pin's inode, after an RCU grace period: a moment later.)
				switch change {
				case "rename":
					testenv.WaitFor(t, "the renamed interface's hooks to go", func() bool { return len(testenv.Attachments(t, x.LocalIndex)) == 0 })
					// Its traffic goes on, and must show up nowhere.
					x.SendRaw(t, true, testFrame, 50)
					x.SendRaw(t, false, testFrame, 50)
				case "move":
					mustDo(t, testenv.RunIn(elsewhere, func() error {
						l, err := netlink.LinkByName(x.Local)
						if err != nil {
							return err
						}
						if !testenv.Eventually(testenv.Patience, func() bool { return len(testenv.Attachments(t, l.Attrs().Index)) == 0 }) {
							return fmt.Errorf("moved interface still has %v", testenv.Attachments(t, l.Attrs().Index))
						}
						return nil
					}))
					x.SendRaw(t, true, testFrame, 50)
				}
				y.SendUDP(t, false, true, 25, payload)
				y.SendUDP(t, false, false, 15, payload)
				got, _ := waitTotals(t, second, y, mode, bpf.Counters{}, kbase, dirs...)
				if n := got.Total(bpf.Receive).Packets; n != 25 {
					t.Errorf("new interface received %d, want 25", n)
				}
				if n := len(ours(t, second, y.LocalIndex)); n != len(dirs) {
					t.Errorf("new interface has %d of our hooks, want %d", n, len(dirs))
				}
				entries, _ := os.ReadDir(filepath.Join(cfg.PinPath, "links"))
				if want := map[string]int{config.AttachTC: 0}[mode]; mode == config.AttachTC && len(entries) != want {
					t.Errorf("tc mode left link pins: %v", entries)
				} else if mode != config.AttachTC && len(entries) != len(dirs) {
					t.Errorf("link pins %v, want the new interface's %d", entries, len(dirs))
				}
			})
		}
	}
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testFrame is a frame of no protocol anyone answers.
var testFrame = testenv.Cat(testenv.Eth(0x88b5), make([]byte, 60))

// A restart over pinned state (an upgrade, or the same build) puts the new
// process's programs on the hooks in place, mid-traffic, without losing a
// frame: afterwards the programs attached are the new process's.
func TestRestartSwapsProgramsInPlace(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "swap"+mode)
			cfg := cfgFor(mode, p.Local)
			pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-swap")
			dirs := directions(mode)
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			kbase := testenv.LinkStats(t, p.Local)

			first, err := Open(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			// Traffic all through the restart.
			stop := make(chan struct{})
			done := make(chan error)
			go func() {
				var err error
				for err == nil {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					err = p.TrySendUDP(false, true, 5, payload)
				}
				done <- err
			}()
			testenv.WaitFor(t, "traffic to be counted", func() bool {
				c := counters(t, first, p.Local)
				return c.Total(bpf.Receive).Packets > 0
			})
			oldHooks := ours(t, first, p.LocalIndex)
			mustDo(t, first.Close())
			second := open(t, cfg)
			newHooks := ours(t, second, p.LocalIndex)
			close(stop)
			mustDo(t, <-done)

			if len(oldHooks) != len(dirs) || len(newHooks) != len(dirs) {
				t.Errorf("hooks: the first process had %v, the second %v; want one per direction each", oldHooks, newHooks)
			}
			if all := testenv.Attachments(t, p.LocalIndex); len(all) != len(dirs) {
				t.Errorf("interface has %v, want only the second process's programs", all)
			}
			for _, h := range newHooks {
				if mode == config.AttachTC && h.Handle != oldHooks[0].Handle && h.Handle != oldHooks[len(oldHooks)-1].Handle {
					t.Errorf("tc filter handle %#x, want the one the first process made", h.Handle)
				}
			}
			got, _ := waitTotals(t, second, p, mode, bpf.Counters{}, kbase, dirs...)
			t.Logf("%d frames received across the restart", got.Total(bpf.Receive).Packets)
		})
	}
}
