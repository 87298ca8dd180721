package datapath

import (
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Frames that lie or are cut short are counted, with the attributes the
// contract promises: an IPv4 header whose IHL claims more than the frame
// carries is ipv4 with no transport; a runt 802.1Q frame (15 bytes) is
// non-IP. One runt case the kernel itself decides: on receive, the stack
// drops a tagged frame too short to untag before any tc hook runs, after
// the driver counted it; so tc and tcx see it never, XDP (which runs
// first) does. README says so; here the difference is exact.
func TestRuntAndLyingFrames(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "runt"+mode)
			d := open(t, cfgFor(mode, p.Local))
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)

			frame := func(dst []byte, parts ...[]byte) []byte {
				f := testenv.Cat(parts...)
				copy(f, dst)
				return f
			}
			runt := func(dst []byte) []byte { return frame(dst, testenv.Eth(0x0800, 0x8100)[:15]) }
			lying := func(dst []byte, tags ...uint16) []byte {
				f := frame(dst, testenv.Eth(0x0800, tags...), testenv.IPv4(17, 5, 8))
				f[14+4*len(tags)] = 0x4f // 60 bytes of header claimed, 28 there
				return f
			}
			const nRunt, nLie, nLieTagged = 3, 4, 2
			var e expect
			p.SendRaw(t, true, runt(p.LocalMAC), nRunt)
			p.SendRaw(t, true, lying(p.LocalMAC), nLie)
			e.add(bpf.Receive, bpf.ClassIPv4Unknown, nLie, uint64(len(lying(p.LocalMAC))))
			p.SendRaw(t, true, lying(p.LocalMAC, 0x8100), nLieTagged)
			e.add(bpf.Receive, bpf.ClassIPv4Unknown, nLieTagged, uint64(len(lying(p.LocalMAC, 0x8100))))
			dropped := uint64(nRunt) // by the stack, before tc
			if mode == config.AttachXDP {
				e.add(bpf.Receive, bpf.ClassNonIP, nRunt, 15)
				dropped = 0
			} else {
				p.SendRaw(t, false, runt(p.PeerMAC), nRunt)
				e.add(bpf.Transmit, bpf.ClassNonIP, nRunt, 15)
				p.SendRaw(t, false, lying(p.PeerMAC), nLie)
				e.add(bpf.Transmit, bpf.ClassIPv4Unknown, nLie, uint64(len(lying(p.PeerMAC))))
			}

			var got bpf.Counters
			var k map[bpf.Direction]bpf.Count
			ok := testenv.Eventually(testenv.Patience, func() bool {
				got = sub(counters(t, d, p.Local), base)
				k = kernelCounts(mode, testenv.LinkStats(t, p.Local).Sub(kbase))
				rx, tx := got.Total(bpf.Receive), got.Total(bpf.Transmit)
				return rx.Packets+dropped == k[bpf.Receive].Packets && rx.Bytes+15*dropped == k[bpf.Receive].Bytes &&
					(mode == config.AttachXDP || tx == k[bpf.Transmit])
			})
			if !ok {
				t.Errorf("counted receive %+v transmit %+v; kernel %+v, %d runts dropped before tc", got.Total(bpf.Receive), got.Total(bpf.Transmit), k, dropped)
			}
			for _, dir := range directions(mode) {
				for c := range e[dir] {
					if got[dir][c] != e[dir][c] {
						t.Errorf("%s %s: counted %+v, sent %+v", dir, bpf.Class(c), got[dir][c], e[dir][c])
					}
				}
			}
		})
	}
}
