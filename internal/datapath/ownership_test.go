package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
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
