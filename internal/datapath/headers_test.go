package datapath

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

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
