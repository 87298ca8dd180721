package datapath

import (
	"errors"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
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
