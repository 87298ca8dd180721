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
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// A program attached on the same hook must still see every frame: ours
// returns TCX_NEXT / TC_ACT_UNSPEC, never a verdict. (On ingress it runs
// behind ours; on egress, where ours is last, ahead of it.)
func TestChainedProgramSeesEveryPacket(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "chain"+mode)
			d := open(t, cfgFor(mode, p.Local))

			// The second program is another copy of ebpfnet's, with maps
			// of its own: it counts what reaches it.
			other, err := bpf.Load(bpf.Options{MaxInterfaces: 1, Programs: []string{bpf.ProgramIngress, bpf.ProgramEgress}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { other.Close() })
			if err := other.SetSlot(p.LocalIndex, 0, bpf.FramingEthernet); err != nil {
				t.Fatal(err)
			}
			attachBehind(t, mode, p.LocalIndex, bpf.Receive, other.Program(bpf.ProgramIngress))
			attachBehind(t, mode, p.LocalIndex, bpf.Transmit, other.Program(bpf.ProgramEgress))
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)
			otherBase := make([]bpf.Counters, 1)
			if err := other.ReadCounters(otherBase); err != nil {
				t.Fatal(err)
			}

			p.SendUDP(t, false, true, 300, payload)
			p.SendUDP(t, true, false, 200, payload)
			p.Ping(t, 10, payload)
			ours, _ := waitTotals(t, d, p, mode, base, kbase, bpf.Receive, bpf.Transmit)

			theirs := make([]bpf.Counters, 1)
			if err := other.ReadCounters(theirs); err != nil {
				t.Fatal(err)
			}
			if got := sub(theirs[0], otherBase[0]); got != ours {
				t.Errorf("the program behind ours counted\n%v\nours counted\n%v", got, ours)
			}
			t.Logf("hooks: %v", testenv.Attachments(t, p.LocalIndex))
		})
	}
}

// attachBehind attaches a third party's program the way such programs
// usually are: appended to the tcx hook, or a tc filter at priority 2
// (adding the clsact qdisc if needed).
func attachBehind(t *testing.T, mode string, index int, dir bpf.Direction, prog *ebpf.Program) {
	t.Helper()
	if mode == config.AttachTCX {
		at := ebpf.AttachTCXIngress
		if dir == bpf.Transmit {
			at = ebpf.AttachTCXEgress
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: index, Program: prog, Attach: at, Anchor: link.Tail()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return
	}
	err := netlink.QdiscAdd(&netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		t.Fatal(err)
	}
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if dir == bpf.Transmit {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: parent, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 2},
		Fd:          prog.FD(), Name: "third_party", DirectAction: true,
	}
	if err := netlink.FilterAdd(f); err != nil {
		t.Fatal(err)
	}
}

// dropper is a third party's program that drops every frame of one length
// (TC_ACT_SHOT / TCX_DROP), counts what it dropped, and passes the rest on
// (TC_ACT_UNSPEC / TCX_NEXT).
func dropper(t *testing.T, length uint32) (*ebpf.Program, func() uint64) {
	t.Helper()
	drops, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drops.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R0, asm.R1, 0, asm.Word), // skb->len
			asm.JNE.Imm(asm.R0, int32(length), "pass"),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, drops.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("drop"), // TC_ACT_SHOT, TCX_DROP
			asm.Return(),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"), // TC_ACT_UNSPEC, TCX_NEXT
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, func() uint64 {
		var n uint64
		if err := drops.Lookup(uint32(0), &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// Another program on the same hooks drops part of the traffic. Receive is
// counted at the head of the ingress hook, where the kernel has counted the
// frame already; transmit at the tail of the egress hook, where a frame the
// other program dropped never gets, as it never gets to the kernel's tx
// counters. Both equal the kernel's counters, and the other program still
// drops what it drops.
func TestCountsLikeTheKernelBesideADroppingProgram(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "drop"+mode)
			const dropPayload = 77
			dropLen := uint32(testenv.UDPFrameLen(false, dropPayload))
			in, inDrops := dropper(t, dropLen)
			out, outDrops := dropper(t, dropLen)
			// The other program is there first, as Cilium or Calico would be.
			attachBehind(t, mode, p.LocalIndex, bpf.Receive, in)
			attachBehind(t, mode, p.LocalIndex, bpf.Transmit, out)
			d := open(t, cfgFor(mode, p.Local))
			t.Logf("hooks: %v", testenv.Attachments(t, p.LocalIndex))

			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)
			const kept, dropped = 150, 40
			p.SendUDP(t, false, true, kept, payload)
			p.SendUDP(t, false, false, kept, payload)
			p.SendRaw(t, true, testenv.VLANFrame(p.LocalMAC, p.PeerMAC, nil, dropPayload), dropped)
			p.SendRawDropped(t, testenv.VLANFrame(p.PeerMAC, p.LocalMAC, nil, dropPayload), dropped)

			got, k := waitTotals(t, d, p, mode, base, kbase, bpf.Receive, bpf.Transmit)
			if n := inDrops(); n != dropped {
				t.Errorf("the other program dropped %d frames on ingress, want %d", n, dropped)
			}
			if n := outDrops(); n != dropped {
				t.Errorf("the other program dropped %d frames on egress, want %d", n, dropped)
			}
			// The kernel counted every received frame, and transmitted only
			// those the other program let through.
			if k.RxPackets != kept+dropped || k.TxPackets != kept {
				t.Errorf("kernel counted %d received and %d transmitted, want %d and %d", k.RxPackets, k.TxPackets, kept+dropped, kept)
			}
			want := bpf.Count{Packets: kept + dropped, Bytes: kept*testenv.UDPFrameLen(false, payload) + dropped*uint64(dropLen)}
			if got[bpf.Receive][bpf.ClassIPv4UDP] != want {
				t.Errorf("received udp4: counted %+v, want %+v", got[bpf.Receive][bpf.ClassIPv4UDP], want)
			}
		})
	}
}

// Interfaces that come and go while ebpfnet runs are attached when they
// appear and forgotten when removed, and their rows are reused.
func TestInterfaceChurn(t *testing.T) {
	testenv.Privileged(t)
	peers := testenv.NewNetns(t)
	d := open(t, cfgFor(config.AttachAuto, "churn*"))
	programs := countBPFObjects(t)

	const n = 50
	addVeth := func(name, peer string) {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(peers)}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	}
	// Created in a burst, as a node creating pods would.
	for i := range n {
		addVeth(fmt.Sprintf("churn%02d", i), fmt.Sprintf("churn%02dp", i))
	}
	testenv.WaitFor(t, fmt.Sprintf("%d interfaces attached", n), func() bool { return len(snap(t, d).Interfaces) == n })
	for _, a := range snap(t, d).Interfaces {
		if got := testenv.Attachments(t, a.Index); len(got) != 2 {
			t.Errorf("%s: attached %v, want ingress and egress", a.Name, got)
		}
	}
	// Attaching loads nothing: the process holds the same programs and
	// maps with 50 interfaces as with none.
	if got := countBPFObjects(t); got != programs {
		t.Errorf("%d BPF programs and maps open with %d interfaces attached, %d with none", got, n, programs)
	}

	// Remove every other one: it leaves the snapshot and its row is freed.
	rowOf := map[string]uint32{}
	for _, a := range d.mgr.AppendAttached(nil) {
		rowOf[a.Name] = a.Row
	}
	for i := 0; i < n; i += 2 {
		name := fmt.Sprintf("churn%02d", i)
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "removed interfaces to leave the snapshot", func() bool { return len(snap(t, d).Interfaces) == n/2 })
	rows, err := d.objs.ReadInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 2 {
		name := fmt.Sprintf("churn%02d", i)
		if snap(t, d).Find(name) != nil {
			t.Errorf("%s still in the snapshot", name)
		}
		if row := rows[rowOf[name]]; row != (bpf.InterfaceRow{}) {
			t.Errorf("%s's row %d not cleared: %+v", name, rowOf[name], row)
		}
	}

	// New ones take the freed rows: the map does not grow with churn.
	for i := range n / 2 {
		addVeth(fmt.Sprintf("churn%02dx", i), fmt.Sprintf("cx%02dp", i))
	}
	testenv.WaitFor(t, fmt.Sprintf("%d interfaces attached again", n), func() bool { return len(snap(t, d).Interfaces) == n })
	for _, a := range d.mgr.AppendAttached(nil) {
		if a.Row >= n {
			t.Errorf("%s got row %d: rows were not reused", a.Name, a.Row)
		}
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "churn") {
			requireDetached(t, l.Attrs().Index)
		}
	}
}

// With max_interfaces, the interfaces over it are not attached and the
// refusals are counted.
func TestMaxInterfaces(t *testing.T) {
	testenv.Privileged(t)
	peers := testenv.NewNetns(t)
	for i := range 3 {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("cap%d", i)}, PeerName: fmt.Sprintf("cap%dp", i), PeerNamespace: netlink.NsFd(peers)}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	}
	cfg := cfgFor(config.AttachAuto, "cap*")
	cfg.MaxInterfaces = 2
	d := open(t, cfg)
	s := snap(t, d)
	if len(s.Interfaces) != 2 {
		t.Errorf("%d interfaces attached, want 2", len(s.Interfaces))
	}
	if got := s.AttachErrors[attach.ErrorMaxInterfaces]; got != 1 {
		t.Errorf("attach errors %v, want one %s", s.AttachErrors, attach.ErrorMaxInterfaces)
	}
}

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

// XDP attaches natively where the driver can (veth) and generically where
// it cannot (ifb).
func TestXDPNativeOrGeneric(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "xdpn0")
	ifb := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "xdpg0"}}
	if err := netlink.LinkAdd(ifb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(ifb) })
	if err := netlink.LinkSetUp(ifb); err != nil {
		t.Fatal(err)
	}
	d := open(t, cfgFor(config.AttachXDP, p.Local, "xdpg0"))
	if n := len(snap(t, d).Interfaces); n != 2 {
		t.Fatalf("%d interfaces attached, want 2", n)
	}
	for name, want := range map[string]uint32{p.Local: nl.XDP_ATTACHED_DRV, "xdpg0": nl.XDP_ATTACHED_SKB} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x == nil || !x.Attached || x.AttachMode != want {
			t.Errorf("%s: xdp %+v, want attach mode %d", name, x, want)
		}
	}
}
