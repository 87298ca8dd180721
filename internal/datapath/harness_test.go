package datapath

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func open(t testing.TB, cfg config.Config) *Datapath {
	t.Helper()
	d, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func cfgFor(mode string, include ...string) config.Config {
	cfg := config.Default()
	cfg.Interfaces.Include = include
	cfg.Attach = mode
	if mode == config.AttachXDP {
		cfg.Directions = []string{config.DirectionReceive}
	}
	return cfg
}

func snap(t testing.TB, d *Datapath) *snapshot.Snapshot {
	t.Helper()
	var s snapshot.Snapshot
	if err := d.Snapshot(&s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// counters returns name's counters in the snapshot, failing if it is not
// attached.
func counters(t testing.TB, d *Datapath, name string) bpf.Counters {
	t.Helper()
	i := snap(t, d).Find(name)
	if i == nil {
		t.Fatalf("%s is not in the snapshot", name)
	}
	return i.Counters
}

func sub(a, b bpf.Counters) bpf.Counters {
	for d := range a {
		for c := range a[d] {
			a[d][c].Packets -= b[d][c].Packets
			a[d][c].Bytes -= b[d][c].Bytes
		}
	}
	return a
}

// waitTotals waits until the counts since base add up to the kernel's
// deltas since kbase in the directions counted, and returns them. Frames are
// counted in softirq context, a moment after the sender's call returns.
func waitTotals(t testing.TB, d *Datapath, p *testenv.Pair, mode string, base bpf.Counters, kbase testenv.Stats, dirs ...bpf.Direction) (bpf.Counters, testenv.Stats) {
	t.Helper()
	var (
		got  bpf.Counters
		k    testenv.Stats
		want map[bpf.Direction]bpf.Count
	)
	if !testenv.Eventually(testenv.Patience, func() bool {
		got = sub(counters(t, d, p.Local), base)
		k = testenv.LinkStats(t, p.Local).Sub(kbase)
		want = kernelCounts(mode, k)
		for _, dir := range dirs {
			if got.Total(dir) != want[dir] {
				return false
			}
		}
		return true
	}) {
		for _, dir := range dirs {
			t.Errorf("%s: counted %+v, kernel says %+v", dir, got.Total(dir), want[dir])
		}
		t.FailNow()
	}
	return got, k
}

// kernelCounts is what the kernel's interface statistics say ebpfnet should
// have counted. One correction: with an XDP program on it, veth receives
// through NAPI and adds each frame to rx_bytes after eth_type_trans has
// pulled the Ethernet header, so its rx_bytes come up exactly 14 bytes per
// frame short of the frame length that the tc path's rx_bytes, the contract
// and ebpfnet count.
func kernelCounts(mode string, k testenv.Stats) map[bpf.Direction]bpf.Count {
	rx := bpf.Count{Packets: k.RxPackets, Bytes: k.RxBytes}
	if mode == config.AttachXDP {
		rx.Bytes += testenv.EthLen * k.RxPackets
	}
	return map[bpf.Direction]bpf.Count{
		bpf.Receive:  rx,
		bpf.Transmit: {Packets: k.TxPackets, Bytes: k.TxBytes},
	}
}

// directions are those counted in mode: XDP sees only receive.
func directions(mode string) []bpf.Direction {
	if mode == config.AttachXDP {
		return []bpf.Direction{bpf.Receive}
	}
	return []bpf.Direction{bpf.Receive, bpf.Transmit}
}

// expect is the traffic a test sent, class by class.
type expect bpf.Counters

func (e *expect) add(d bpf.Direction, c bpf.Class, packets int, frameLen uint64) {
	e[d][c].Packets += uint64(packets)
	e[d][c].Bytes += uint64(packets) * frameLen
}

// Traffic sizes: small enough to be quick, large enough to matter.
const (
	nUDP4, nUDP6, nPing, nVLAN, nQinQ = 200, 100, 20, 30, 20
	nUDP4Out, nUDP6Out, nVLANOut      = 50, 30, 10
	payload                           = 100
	tcpBytes                          = 1 << 20
)

// sendMixed sends every kind of traffic the contract names, and returns
// the classes it knows exactly. TCP is left out: its packet count is the
// kernel's business, and is checked as the remainder.
func sendMixed(t *testing.T, p *testenv.Pair, transmit bool) expect {
	var e expect
	udp4, udp6 := testenv.UDPFrameLen(false, payload), testenv.UDPFrameLen(true, payload)

	p.SendUDP(t, false, true, nUDP4, payload)
	e.add(bpf.Receive, bpf.ClassIPv4UDP, nUDP4, udp4)
	p.SendUDP(t, true, true, nUDP6, payload)
	e.add(bpf.Receive, bpf.ClassIPv6UDP, nUDP6, udp6)
	p.Ping(t, nPing, payload)
	e.add(bpf.Receive, bpf.ClassIPv4ICMP, nPing, udp4)
	e.add(bpf.Transmit, bpf.ClassIPv4ICMP, nPing, udp4)

	// Tagged frames, which the kernel's VLAN untagging meets on receive:
	// the outer tag goes to skb metadata before tc runs.
	p.SendRaw(t, true, testenv.VLANFrame(p.LocalMAC, p.PeerMAC, []uint16{0x8100}, payload), nVLAN)
	e.add(bpf.Receive, bpf.ClassIPv4UDP, nVLAN, udp4+testenv.VLANLen)
	p.SendRaw(t, true, testenv.VLANFrame(p.LocalMAC, p.PeerMAC, []uint16{0x88a8, 0x8100}, payload), nQinQ)
	e.add(bpf.Receive, bpf.ClassIPv4UDP, nQinQ, udp4+2*testenv.VLANLen)

	if transmit {
		p.SendUDP(t, false, false, nUDP4Out, payload)
		e.add(bpf.Transmit, bpf.ClassIPv4UDP, nUDP4Out, udp4)
		p.SendUDP(t, true, false, nUDP6Out, payload)
		e.add(bpf.Transmit, bpf.ClassIPv6UDP, nUDP6Out, udp6)
		p.SendRaw(t, false, testenv.VLANFrame(p.PeerMAC, p.LocalMAC, []uint16{0x88a8, 0x8100}, payload), nVLANOut)
		e.add(bpf.Transmit, bpf.ClassIPv4UDP, nVLANOut, udp4+2*testenv.VLANLen)
	}
	p.TCPTransfer(t, tcpBytes)
	return e
}

// checkClasses requires got to equal e class by class, with TCP/IPv4 as
// the remainder of the kernel's totals, which must have carried the
// transfer.
func checkClasses(t *testing.T, got bpf.Counters, e expect, kernel map[bpf.Direction]bpf.Count, dirs ...bpf.Direction) {
	t.Helper()
	for _, d := range dirs {
		rest := kernel[d]
		for _, x := range e[d] {
			rest.Packets -= x.Packets
			rest.Bytes -= x.Bytes
		}
		e[d][bpf.ClassIPv4TCP] = rest
		if d == bpf.Receive && rest.Bytes < tcpBytes {
			t.Errorf("receive: %d bytes left for TCP, the transfer alone was %d", rest.Bytes, tcpBytes)
		}
		for c := range e[d] {
			if got[d][c] != e[d][c] {
				t.Errorf("%s %s: counted %+v, sent %+v", d, bpf.Class(c), got[d][c], e[d][c])
			}
		}
	}
}

// Nothing of ebpfnet's may stay on the interface.
func requireDetached(t testing.TB, index int) {
	t.Helper()
	for _, a := range testenv.Attachments(t, index) {
		if strings.Contains(a, "ebpfnet") {
			t.Errorf("still attached to %d: %s", index, a)
		}
	}
}

func countBPFObjects(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err == nil && (strings.Contains(string(b), "prog_type:") || strings.Contains(string(b), "map_type:")) {
			n++
		}
	}
	return n
}
