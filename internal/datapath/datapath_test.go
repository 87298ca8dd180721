package datapath

import (
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

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

// Nothing of ebpfnet's may stay on the interface.
func requireDetached(t testing.TB, index int) {
	t.Helper()
	for _, a := range testenv.Attachments(t, index) {
		if strings.Contains(a, "ebpfnet") {
			t.Errorf("still attached to %d: %s", index, a)
		}
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

// ipv6HopByHopFrame is an IPv6 frame from the local end to the peer with a
// hop-by-hop options header before a UDP datagram of payload bytes.
func ipv6HopByHopFrame(p *testenv.Pair, payload int) []byte {
	f := append(append([]byte{}, p.PeerMAC...), p.LocalMAC...)
	f = append(f, 0x86, 0xdd)
	ip := make([]byte, testenv.IPv6Len+8+testenv.UDPLen+payload)
	ip[0], ip[6], ip[7] = 0x60, 0, 64 // next header: hop-by-hop
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-testenv.IPv6Len))
	copy(ip[8:], testenv.LocalIPv6.To16())
	copy(ip[24:], testenv.PeerIPv6.To16())
	ip[40] = 17 // hop-by-hop: next header UDP, length 0 (8 bytes), PadN
	ip[42], ip[43] = 1, 4
	return append(f, ip...)
}

// A tc program can meet frames whose headers lie outside the skb's linear
// data; they must be classified as any other.
func TestHeadersOutsideLinearData(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "paged"+mode)
			p.SetMTU(t, 9000)
			d := open(t, cfgFor(mode, p.Local))
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			base, kbase := counters(t, d, p.Local), testenv.LinkStats(t, p.Local)

			const n, big = 20, 6000 // over a page: the packet socket pages it
			var e expect
			for _, f := range []struct {
				frame []byte
				class bpf.Class
			}{
				{testenv.VLANFrame(p.PeerMAC, p.LocalMAC, nil, big), bpf.ClassIPv4UDP},
				{testenv.VLANFrame(p.PeerMAC, p.LocalMAC, []uint16{0x88a8, 0x8100}, big), bpf.ClassIPv4UDP},
				{ipv6HopByHopFrame(p, big), bpf.ClassIPv6UDP},
			} {
				p.SendRawPaged(t, f.frame, n)
				e.add(bpf.Transmit, f.class, n, uint64(len(f.frame)))
			}
			got, k := waitTotals(t, d, p, mode, base, kbase, bpf.Transmit)
			if k.TxPackets != 3*n {
				t.Fatalf("kernel transmitted %d frames, the test sent %d", k.TxPackets, 3*n)
			}
			for c := range e[bpf.Transmit] {
				if got[bpf.Transmit][c] != e[bpf.Transmit][c] {
					t.Errorf("%s: counted %+v, sent %+v", bpf.Class(c), got[bpf.Transmit][c], e[bpf.Transmit][c])
				}
			}
		})
	}
}

// Interfaces without an Ethernet header (tun here; WireGuard and ipip in
// the 6.1 VM) carry IP packets from their first byte: they are parsed from
// the IP header, never read as if bytes 12-13 were an EtherType.
func TestCountsOnInterfacesWithoutEthernetHeader(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			tun := testenv.NewTun(t, "tun"+mode)
			d := open(t, cfgFor(mode, tun.Name))
			dirs := directions(mode)
			testenv.WaitQuiet(t, tun.Name, 300*time.Millisecond)
			base, kbase := counters(t, d, tun.Name), testenv.LinkStats(t, tun.Name)

			peer, local := testenv.TunPeerIPv4.To4(), testenv.TunIPv4.To4()
			udp4 := testenv.UDP4Packet(peer, local, 9, payload)
			icmp4 := testenv.IPv4(1, 5, 16)
			udp6 := testenv.IPv6(17, 8+payload)
			chain6 := testenv.IPv6(6, 20, 0, 43) // two extension headers: the slow path
			var e expect
			for _, w := range []struct {
				packet []byte
				n      int
				class  bpf.Class
			}{{udp4, 30, bpf.ClassIPv4UDP}, {icmp4, 20, bpf.ClassIPv4ICMP}, {udp6, 20, bpf.ClassIPv6UDP}, {chain6, 10, bpf.ClassIPv6TCP}} {
				tun.Write(t, w.packet, w.n)
				e.add(bpf.Receive, w.class, w.n, uint64(len(w.packet)))
			}
			// Transmit: datagrams the kernel routes out through the tun.
			const nOut = 25
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: testenv.TunIPv4}, &net.UDPAddr{IP: testenv.TunPeerIPv4, Port: 9})
			if err != nil {
				t.Fatal(err)
			}
			for range nOut {
				if _, err := c.Write(make([]byte, payload)); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()

			got, k := waitTotals(t, d, &testenv.Pair{Local: tun.Name}, config.AttachTC, base, kbase, dirs...)
			if k.RxPackets != 80 {
				t.Fatalf("kernel received %d packets on %s, the test wrote 80", k.RxPackets, tun.Name)
			}
			for c := range e[bpf.Receive] {
				if got[bpf.Receive][c] != e[bpf.Receive][c] {
					t.Errorf("receive %s: counted %+v, sent %+v", bpf.Class(c), got[bpf.Receive][c], e[bpf.Receive][c])
				}
			}
			if mode == config.AttachXDP {
				return
			}
			// The kernel may answer the datagrams to port 9 with ICMP port
			// unreachable (rate-limited): those are the rest of transmit.
			want := bpf.Count{Packets: nOut, Bytes: nOut * uint64(testenv.IPv4Len+testenv.UDPLen+payload)}
			if got[bpf.Transmit][bpf.ClassIPv4UDP] != want {
				t.Errorf("transmit ipv4/udp: counted %+v, sent %+v", got[bpf.Transmit][bpf.ClassIPv4UDP], want)
			}
			rest := got.Total(bpf.Transmit).Packets - nOut
			if icmp := got[bpf.Transmit][bpf.ClassIPv4ICMP].Packets; icmp != rest {
				t.Errorf("transmit: %d packets besides the datagrams, %d of them ICMP: %v", rest, icmp, got[bpf.Transmit])
			}
		})
	}
}

// Tunnels without a link-layer header: ipip and WireGuard over a veth
// pair. This kernel has neither module; the 6.1 VM (make test-kernel) runs
// these.
func TestCountsOnTunnels(t *testing.T) {
	testenv.Privileged(t)
	for _, tc := range []struct {
		kind string
		make func(testing.TB, *testenv.Pair, string) *testenv.Tunnel
	}{{"ipip", testenv.NewIPIP}, {"wireguard", testenv.NewWireGuard}} {
		for _, mode := range []string{config.AttachAuto, config.AttachXDP} {
			t.Run(tc.kind+"/"+mode, func(t *testing.T) {
				p := testenv.NewPair(t, "under"+mode)
				tun := tc.make(t, p, "tn"+mode)
				d := open(t, cfgFor(mode, tun.Local))
				dirs := directions(mode)
				// A first datagram each way: WireGuard's handshake is then
				// over, and the tunnel carries only what the test sends.
				p.SendUDPBetween(t, testenv.TunIPv4, testenv.TunPeerIPv4, true, 1, payload)
				p.SendUDPBetween(t, testenv.TunIPv4, testenv.TunPeerIPv4, false, 1, payload)
				testenv.WaitQuiet(t, tun.Local, 300*time.Millisecond)
				base, kbase := counters(t, d, tun.Local), testenv.LinkStats(t, tun.Local)

				const n = 40
				p.SendUDPBetween(t, testenv.TunIPv4, testenv.TunPeerIPv4, true, n, payload)
				p.SendUDPBetween(t, testenv.TunIPv4, testenv.TunPeerIPv4, false, n, payload)
				packet := uint64(testenv.IPv4Len + testenv.UDPLen + payload)
				want := bpf.Count{Packets: n, Bytes: n * packet}

				var got bpf.Counters
				if tc.kind == "ipip" {
					got, _ = waitTotals(t, d, &testenv.Pair{Local: tun.Local}, config.AttachTC, base, kbase, dirs...)
				} else {
					// WireGuard's own counters are not the packets that
					// cross the interface: see checkWireGuardStats.
					testenv.WaitFor(t, "the datagrams to be counted", func() bool {
						got = sub(counters(t, d, tun.Local), base)
						for _, dir := range dirs {
							if got.Total(dir).Packets < n {
								return false
							}
						}
						return true
					})
					checkWireGuardStats(t, testenv.LinkStats(t, tun.Local).Sub(kbase), n, packet, mode != config.AttachXDP)
				}
				for _, dir := range dirs {
					if got[dir][bpf.ClassIPv4UDP] != want || got.Total(dir) != want {
						t.Errorf("%s: counted %v, sent %+v as ipv4/udp", dir, got[dir], want)
					}
				}
			})
		}
	}
}

// checkWireGuardStats pins down how WireGuard counts, as README says: each
// data packet at its encrypted length (the IP packet padded to 16 bytes,
// plus 16 bytes of header and a 16-byte tag), and on receive also the
// keepalives (32 bytes), which never reach the interface as packets. So
// ebpfnet, which counts the IP packets that cross the interface, differs
// from WireGuard's own statistics by exactly that.
func checkWireGuardStats(t *testing.T, k testenv.Stats, n, packet uint64, transmit bool) {
	t.Helper()
	encrypted := (packet+15)/16*16 + 32
	keepalives := k.RxPackets - n
	if k.RxPackets < n || k.RxBytes != n*encrypted+32*keepalives {
		t.Errorf("wireguard received %d packets, %d bytes; want %d of %d bytes and keepalives of 32", k.RxPackets, k.RxBytes, n, encrypted)
	}
	if transmit && (k.TxPackets != n || k.TxBytes != n*encrypted) {
		t.Errorf("wireguard transmitted %d packets, %d bytes; want %d of %d bytes", k.TxPackets, k.TxBytes, n, encrypted)
	}
}
