package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// ours lists the programs of d on the interface's hooks.
func ours(t testing.TB, d *Datapath, index int) []testenv.Attached {
	t.Helper()
	ids := map[ebpf.ProgramID]bool{}
	for _, name := range []string{bpf.ProgramIngress, bpf.ProgramEgress, bpf.ProgramXDP} {
		if id := d.objs.ProgramID(name); id != 0 {
			ids[ebpf.ProgramID(id)] = true
		}
	}
	var out []testenv.Attached
	for _, a := range testenv.AttachedPrograms(t, index) {
		if ids[a.ID] {
			out = append(out, a)
		}
	}
	return out
}

// Two instances without a pin path on one interface (a rolling update with
// maxSurge) both count exactly; when the old one exits, the new one is
// still attached and has lost nothing. XDP takes one program per
// interface: there the second refuses the interface, with one clear line.
func TestTwoInstancesOnOneInterface(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "two"+mode)
			cfg := cfgFor(mode, p.Local)
			dirs := directions(mode)
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			kbase := testenv.LinkStats(t, p.Local)

			old, err := Open(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { old.Close() })
			var log logBuffer
			// The new instance also counts mark*, which the old one does not.
			next, err := Open(cfgFor(mode, p.Local, "mark*"), slog.New(slog.NewTextHandler(&log, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { next.Close() })

			if mode == config.AttachXDP {
				s := snap(t, next)
				if len(s.Interfaces) != 0 || s.AttachErrors[attach.ErrorAttach] < 1 {
					t.Errorf("second xdp instance: attached %d, errors %v; want none attached, one attach error", len(s.Interfaces), s.AttachErrors)
				}
				// Every netlink event for the interface retries; the
				// failure is still one error and one line. An interface
				// created after the retries is attached after them (the
				// watcher takes events in order): then they are done.
				l, err := netlink.LinkByIndex(p.LocalIndex)
				mustDo(t, err)
				for i := range 3 {
					mustDo(t, netlink.LinkSetAlias(l, fmt.Sprintf("retry%d", i)))
				}
				mark := testenv.NewPair(t, "mark"+mode)
				testenv.WaitFor(t, "the interface made after the retries", func() bool { return snap(t, next).Find(mark.Local) != nil })
				if got := snap(t, next).AttachErrors[attach.ErrorAttach]; got != 1 {
					t.Errorf("%d attach errors counted for one interface that kept failing the same way, want 1", got)
				}
				if got := log.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "has an XDP program already") {
					t.Errorf("second xdp instance logged:\n%s\nwant one line saying the interface has an XDP program", got)
				}
				p.SendUDP(t, false, true, 40, payload)
				waitTotals(t, old, p, mode, bpf.Counters{}, kbase, dirs...)
				return
			}

			p.SendUDP(t, false, true, 60, payload)
			p.SendUDP(t, false, false, 40, payload)
			waitTotals(t, old, p, mode, bpf.Counters{}, kbase, dirs...)
			waitTotals(t, next, p, mode, bpf.Counters{}, kbase, dirs...)
			if n, m := len(ours(t, old, p.LocalIndex)), len(ours(t, next, p.LocalIndex)); n != 2 || m != 2 {
				t.Errorf("hooks: old instance has %d, new one %d; want 2 each (%v)", n, m, testenv.Attachments(t, p.LocalIndex))
			}

			// The old instance exits: it takes its own hooks and nothing else.
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			if n, all := len(ours(t, next, p.LocalIndex)), testenv.Attachments(t, p.LocalIndex); n != 2 || len(all) != 2 {
				t.Errorf("after the old instance exited: new one has %d hooks, interface has %v; want the new one's 2 only", n, all)
			}
			p.SendUDP(t, false, true, 30, payload)
			p.Ping(t, 5, payload)
			waitTotals(t, next, p, mode, bpf.Counters{}, kbase, dirs...)
		})
	}
}

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A pin path has one owner: a second Open is refused, naming the owner's
// PID, and leaves the owner's state alone.
func TestOnePinPathOneOwner(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "owner0")
	cfg := cfgFor(config.AttachAuto, p.Local)
	pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-owner")
	first := open(t, cfg)
	before := snap(t, first).Find(p.Local)
	other := cfgFor(config.AttachAuto, "*")
	other.PinPath = cfg.PinPath
	_, err := Open(other, nil)
	if !errors.Is(err, bpf.ErrPinInUse) || !strings.Contains(err.Error(), fmt.Sprintf("PID %d", os.Getpid())) || !strings.Contains(err.Error(), cfg.PinPath) {
		t.Fatalf("second owner: %v; want refused, naming %s and PID %d", err, cfg.PinPath, os.Getpid())
	}
	kbase := testenv.LinkStats(t, p.Local)
	p.SendUDP(t, false, true, 20, payload)
	got, _ := waitTotals(t, first, p, config.AttachAuto, before.Counters, kbase, bpf.Receive, bpf.Transmit)
	if got.Total(bpf.Receive).Packets != 20 {
		t.Errorf("owner counted %d after the refused open, want 20", got.Total(bpf.Receive).Packets)
	}
	if n := len(ours(t, first, p.LocalIndex)); n != 2 {
		t.Errorf("owner's hooks after the refused open: %d, want 2", n)
	}
}

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

// Filters of anyone else are never touched, whatever their name or
// priority, with or without pinned state.
func TestOthersFiltersAreNeverTouched(t *testing.T) {
	testenv.Privileged(t)
	for _, pinned := range []bool{false, true} {
		t.Run(fmt.Sprintf("pinned=%v", pinned), func(t *testing.T) {
			p := testenv.NewPair(t, fmt.Sprintf("others%v", pinned)[:8])
			other, err := bpf.Load(bpf.Options{MaxInterfaces: 1, Programs: []string{bpf.ProgramIngress}})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			prog := other.Program(bpf.ProgramIngress)
			mustDo(t, netlink.QdiscAdd(&netlink.GenericQdisc{
				QdiscAttrs: netlink.QdiscAttrs{LinkIndex: p.LocalIndex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
				QdiscType:  "clsact",
			}))
			// Named like ours, at our priority and at another, and not.
			for _, f := range []*netlink.BpfFilter{
				{FilterAttrs: netlink.FilterAttrs{LinkIndex: p.LocalIndex, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 0xeb9f, Protocol: unix.ETH_P_ALL, Priority: 1},
					Fd: prog.FD(), Name: "ebpfnet_ingress", DirectAction: true},
				{FilterAttrs: netlink.FilterAttrs{LinkIndex: p.LocalIndex, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 7, Protocol: unix.ETH_P_ALL, Priority: 9},
					Fd: prog.FD(), Name: "ebpfnet_ingress", DirectAction: true},
				{FilterAttrs: netlink.FilterAttrs{LinkIndex: p.LocalIndex, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 8, Protocol: unix.ETH_P_ALL, Priority: 10},
					Fd: prog.FD(), Name: "someone_else", DirectAction: true},
			} {
				mustDo(t, netlink.FilterAdd(f))
			}
			theirs := func() int {
				n := 0
				for _, a := range testenv.AttachedPrograms(t, p.LocalIndex) {
					if a.ID == ebpf.ProgramID(other.ProgramID(bpf.ProgramIngress)) {
						n++
					}
				}
				return n
			}
			cfg := cfgFor(config.AttachTC, p.Local)
			if pinned {
				pinAt(t, &cfg, "/sys/fs/bpf/ebpfnet-others")
			}
			for range 2 { // with pins, the second start adopts
				d := open(t, cfg)
				if n := len(ours(t, d, p.LocalIndex)); n != 2 {
					t.Errorf("%d of our filters, want 2", n)
				}
				if n := theirs(); n != 3 {
					t.Errorf("%d of the other filters left after attach, want 3: %v", n, testenv.Attachments(t, p.LocalIndex))
				}
				mustDo(t, d.Close())
				if n := theirs(); n != 3 {
					t.Errorf("%d of the other filters left after close, want 3: %v", n, testenv.Attachments(t, p.LocalIndex))
				}
				want := 3 // without pins, ours went
				if pinned {
					want = 5 // with pins, ours stay for the next start
				}
				if all := testenv.Attachments(t, p.LocalIndex); len(all) != want {
					t.Errorf("after close: %v, want %d filters", all, want)
				}
			}
		})
	}
}

// A snapshot never pairs a row with an interface it no longer belongs to:
// with interfaces churning under the same names and snapshots taken as
// fast as they come, no cumulative value goes down under an unchanged
// start time. Every interface made is seen by the snapshots with the
// traffic sent to it before it goes, so the check covers each of them.
func TestSnapshotsAreConsistentUnderChurn(t *testing.T) {
	testenv.Privileged(t)
	d := open(t, cfgFor(config.AttachAuto, "snap*"))
	type key struct {
		name  string
		start time.Time
	}
	const rounds, perRound = 30, 3
	var (
		stop atomic.Bool
		mu   sync.Mutex // guards what follows, shared with the test
		bad  []string
		seen = map[key]uint64{} // each interface's packets in the latest snapshot that had it
		// snapshots taken, and those with an interface in them
		scraped, withInterfaces int
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := map[key]uint64{}
		var s snapshot.Snapshot
		for !stop.Load() {
			err := d.Snapshot(&s)
			mu.Lock()
			if err != nil {
				bad = append(bad, err.Error())
				mu.Unlock()
				return
			}
			scraped++
			if len(s.Interfaces) > 0 {
				withInterfaces++
			}
			for _, i := range s.Interfaces {
				k := key{i.Name, i.Start}
				n := i.Counters.Total(bpf.Receive).Packets + i.Counters.Total(bpf.Transmit).Packets
				if n < last[k] && len(bad) < 5 {
					bad = append(bad, fmt.Sprintf("%s (start %v) went from %d to %d", i.Name, i.Start, last[k], n))
				}
				last[k] = n
				seen[k] = n
			}
			mu.Unlock()
		}
	}()
	defer func() { stop.Store(true); <-done }()
	for round := range rounds {
		var pairs []*testenv.Pair
		for i := range perRound {
			p, err := testenv.CreatePair(fmt.Sprintf("snap%d", i))
			if err != nil {
				t.Fatal(err)
			}
			pairs = append(pairs, p)
		}
		for _, p := range pairs {
			var k key
			testenv.WaitFor(t, "attach", func() bool {
				i := snap(t, d).Find(p.Local)
				if i != nil {
					k = key{i.Name, i.Start}
				}
				return i != nil
			})
			n := 5 + round%7
			p.SendUDP(t, false, true, n, payload)
			testenv.WaitFor(t, fmt.Sprintf("the snapshots to see %s's %d packets", p.Local, n), func() bool {
				mu.Lock()
				defer mu.Unlock()
				return seen[k] >= uint64(n) || len(bad) > 0
			})
		}
		for _, p := range pairs {
			p.Close()
		}
	}
	stop.Store(true)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("after %d snapshots: %s", scraped, strings.Join(bad, "; "))
	}
	// What was checked: every interface made, and at least one snapshot
	// with interfaces in it per round.
	if len(seen) < rounds*perRound || withInterfaces < rounds {
		t.Errorf("the snapshots saw %d interfaces, in %d of %d snapshots; want all %d made, in at least %d snapshots", len(seen), withInterfaces, scraped, rounds*perRound, rounds)
	}
	t.Logf("%d snapshots, %d with interfaces, of %d interfaces", scraped, withInterfaces, len(seen))
}

// An interface refused for want of a row is attached as soon as one frees,
// without any event of its own.
func TestRefusedInterfaceAttachedWhenARowFrees(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			a := testenv.NewPair(t, "full"+mode+"a")
			b := testenv.NewPair(t, "full"+mode+"b")
			cfg := cfgFor(mode, a.Local, b.Local)
			cfg.MaxInterfaces = 1
			d := open(t, cfg)
			s := snap(t, d)
			if len(s.Interfaces) != 1 || s.Interfaces[0].Name != a.Local {
				t.Fatalf("attached %+v, want %s alone", s.Interfaces, a.Local)
			}
			a.Close()
			testenv.WaitFor(t, b.Local+" to be attached", func() bool { return snap(t, d).Find(b.Local) != nil })
			testenv.WaitQuiet(t, b.Local, 300*time.Millisecond)
			kbase := testenv.LinkStats(t, b.Local)
			base := counters(t, d, b.Local)
			b.SendUDP(t, false, true, 12, payload)
			waitTotals(t, d, b, mode, base, kbase, directions(mode)...)
		})
	}
}

// A pin path that would live only as long as the process (a BPF filesystem
// mounted in a private mount namespace, as the tests' own) is refused at
// start, before anything is loaded.
func TestPinPathThatWouldVanishRefused(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "vanish0")
	cfg := cfgFor(config.AttachAuto, p.Local)
	cfg.PinPath = filepath.Join(t.TempDir(), "not", "yet")
	objects := countBPFObjects(t)
	_, err := Open(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "mount namespace of its own") || !strings.Contains(err.Error(), "mount the host's BPF filesystem there") {
		t.Errorf("pin path on a private mount: %v", err)
	}
	if got := countBPFObjects(t); got != objects {
		t.Errorf("%d BPF objects open after the refusal, %d before", got, objects)
	}
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
		t.Errorf("attached %v after the refusal", got)
	}
}

// An interface deleted and created again under the same name starts a new
// series: a new start time, counts from zero.
func TestRecreatedInterfaceGetsANewStartTime(t *testing.T) {
	testenv.Privileged(t)
	d := open(t, cfgFor(config.AttachAuto, "again0"))
	p := testenv.NewPair(t, "again0")
	testenv.WaitFor(t, "attach", func() bool { return snap(t, d).Find(p.Local) != nil })
	p.SendUDP(t, false, true, 10, payload)
	testenv.WaitFor(t, "counts", func() bool {
		c := counters(t, d, p.Local)
		return c.Total(bpf.Receive).Packets >= 10
	})
	first := snap(t, d).Find(p.Local).Start
	p.Close()
	testenv.WaitFor(t, "detach", func() bool { return snap(t, d).Find("again0") == nil })
	q := testenv.NewPair(t, "again0")
	testenv.WaitFor(t, "attach again", func() bool { return snap(t, d).Find(q.Local) != nil })
	i := snap(t, d).Find(q.Local)
	if !i.Start.After(first) {
		t.Errorf("re-created interface's start %v, first one's %v: want a later one", i.Start, first)
	}
	if n := i.Counters.Total(bpf.Receive).Packets; n > 2 {
		t.Errorf("re-created interface starts at %d packets received", n)
	}
}
