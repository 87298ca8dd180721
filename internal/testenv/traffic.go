//go:build linux

package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Header lengths for computing the frame sizes the kernel counts.
const (
	EthLen  = 14
	IPv4Len = 20
	IPv6Len = 40
	UDPLen  = 8
	ICMPLen = 8
	VLANLen = 4
)

// UDPFrameLen is the length of a frame carrying one UDP datagram.
func UDPFrameLen(v6 bool, payload int) uint64 {
	if v6 {
		return uint64(EthLen + IPv6Len + UDPLen + payload)
	}
	return uint64(EthLen + IPv4Len + UDPLen + payload)
}

// SendUDP sends n datagrams of payload bytes from the peer to the local
// end (fromPeer) or back, to a socket listening on the other end, and waits
// until all have arrived. Every datagram is one frame.
func (p *Pair) SendUDP(t testing.TB, v6, fromPeer bool, n, payload int) {
	t.Helper()
	p.must(t, p.sendUDP(v6, fromPeer, n, payload))
}

// SendUDPOnCPUs sends n datagrams from the peer from each of the given
// CPUs at once, so that every CPU counts at the same time.
func (p *Pair) SendUDPOnCPUs(t testing.TB, cpus []int, n, payload int) {
	t.Helper()
	errc := make(chan error, len(cpus))
	for _, cpu := range cpus {
		go func() {
			// Never unlocked: the thread's affinity is changed for good, so
			// it dies with the goroutine.
			runtime.LockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errc <- fmt.Errorf("pin sender to CPU %d: %w", cpu, err)
				return
			}
			errc <- p.sendUDP(false, true, n, payload)
		}()
	}
	for range cpus {
		p.must(t, <-errc)
	}
}

// TrySendUDP is SendUDP for a goroutine other than the test's: it returns
// the error instead of failing the test.
func (p *Pair) TrySendUDP(v6, fromPeer bool, n, payload int) error {
	return p.sendUDP(v6, fromPeer, n, payload)
}

func (p *Pair) sendUDP(v6, fromPeer bool, n, payload int) error {
	local, peer := LocalIPv4, PeerIPv4
	if v6 {
		local, peer = LocalIPv6, PeerIPv6
	}
	return p.sendUDPBetween(local, peer, fromPeer, n, payload, arrival)
}

// SendUDPBetween is SendUDP between other addresses of the two sides, such
// as those of a tunnel over the pair: local in the test's namespace, peer
// in the peer's.
func (p *Pair) SendUDPBetween(t testing.TB, local, peer net.IP, fromPeer bool, n, payload int) {
	t.Helper()
	p.must(t, p.sendUDPBetween(local, peer, fromPeer, n, payload, arrival))
}

// arrival is how long a sender waits for its datagrams to arrive before it
// reports how many did.
const arrival = 10 * time.Second

func (p *Pair) sendUDPBetween(local, peer net.IP, fromPeer bool, n, payload int, wait time.Duration) error {
	network, src, dst := "udp4", peer, local
	if local.To4() == nil {
		network = "udp6"
	}
	if !fromPeer {
		src, dst = dst, src
	}
	var rx, tx *net.UDPConn
	listen := func() (err error) {
		rx, err = net.ListenUDP(network, &net.UDPAddr{IP: dst})
		return err
	}
	dial := func() (err error) {
		tx, err = net.DialUDP(network, &net.UDPAddr{IP: src}, rx.LocalAddr().(*net.UDPAddr))
		return err
	}
	var err error
	if fromPeer {
		if err = listen(); err == nil {
			err = RunIn(p.PeerNS, dial)
		}
	} else {
		if err = RunIn(p.PeerNS, listen); err == nil {
			err = dial()
		}
	}
	if err != nil {
		return err
	}
	defer rx.Close()
	defer tx.Close()
	_ = rx.SetReadBuffer(4 << 20)

	buf := make([]byte, payload)
	var arrived atomic.Int64
	got := make(chan int, 1)
	go func() {
		b := make([]byte, 65536)
		_ = rx.SetReadDeadline(time.Now().Add(wait))
		for arrived.Load() < int64(n) {
			if _, err := rx.Read(b); err != nil {
				break
			}
			arrived.Add(1)
		}
		got <- int(arrived.Load())
	}()
	// A window keeps a burst from overflowing the receiver's queues (veth
	// with XDP has a 256-frame ring), so that every datagram arrives.
	const window = 64
	deadline := time.Now().Add(wait)
	for i := 0; i < n; i++ {
		for int64(i)-arrived.Load() >= window && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		if _, err := tx.Write(buf); err != nil {
			return fmt.Errorf("send datagram %d: %w", i, err)
		}
	}
	if r := <-got; r != n {
		return fmt.Errorf("%d of %d datagrams arrived", r, n)
	}
	return nil
}

// Ping sends n ICMP echo requests of payload bytes from the peer to the
// local end and waits for every reply: n frames received and n transmitted
// by the local end, each UDPFrameLen(false, payload) long (ICMP's header is
// as long as UDP's).
func (p *Pair) Ping(t testing.TB, n, payload int) {
	t.Helper()
	var c *icmp.PacketConn
	p.must(t, RunIn(p.PeerNS, func() (err error) {
		c, err = icmp.ListenPacket("ip4:icmp", PeerIPv4.String())
		return err
	}))
	defer c.Close()
	for i := 0; i < n; i++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0xeb, Seq: i, Data: make([]byte, payload)}}
		b, err := msg.Marshal(nil)
		p.must(t, err)
		if _, err := c.WriteTo(b, &net.IPAddr{IP: LocalIPv4}); err != nil {
			t.Fatalf("echo request %d: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		rb := make([]byte, 1500)
		for {
			m, _, err := c.ReadFrom(rb)
			if err != nil {
				t.Fatalf("echo reply %d: %v", i, err)
			}
			if rm, err := icmp.ParseMessage(1, rb[:m]); err == nil && rm.Type == ipv4.ICMPTypeEchoReply {
				break
			}
		}
	}
}

// TCPTransfer sends size bytes over a TCP connection from the peer to the
// local end and waits until they have all been read and the connection is
// closed on both sides.
func (p *Pair) TCPTransfer(t testing.TB, size int) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: LocalIPv4})
	p.must(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		nr, err := io.Copy(io.Discard, c)
		if err == nil && nr != int64(size) {
			err = fmt.Errorf("read %d of %d bytes", nr, size)
		}
		done <- err
	}()
	var c net.Conn
	p.must(t, RunIn(p.PeerNS, func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	}))
	_, err = c.Write(make([]byte, size))
	p.must(t, err)
	p.must(t, c.(*net.TCPConn).CloseWrite())
	p.must(t, <-done)
	// Wait for the peer to see our FIN, so the last ACKs are on the wire.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	c.Close()
}

// VLANFrame builds an Ethernet frame from src to dst carrying one UDP/IPv4
// datagram of payload bytes, behind the given VLAN tags (TPIDs, outermost
// first: 0x8100 for 802.1Q, 0x88a8 for 802.1ad).
func VLANFrame(dst, src net.HardwareAddr, tpids []uint16, payload int) []byte {
	f := append([]byte{}, dst...)
	f = append(f, src...)
	for i, tpid := range tpids {
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = binary.BigEndian.AppendUint16(f, uint16(100+i)) // VLAN ID
	}
	f = binary.BigEndian.AppendUint16(f, 0x0800)
	ip := make([]byte, IPv4Len+UDPLen+payload)
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:], PeerIPv4.To4())
	copy(ip[16:], LocalIPv4.To4())
	binary.BigEndian.PutUint16(ip[IPv4Len+4:], uint16(UDPLen+payload))
	return append(f, ip...)
}

// SendRaw sends each frame n times through an AF_PACKET socket on the
// peer's end (fromPeer) or the local one, as it is: this kernel has no VLAN
// devices, so tagged frames are made by hand.
func (p *Pair) SendRaw(t testing.TB, fromPeer bool, frame []byte, n int) {
	t.Helper()
	p.sendRaw(t, fromPeer, frame, n, false, false)
}

// SendRawPaged sends each frame n times from the local end so that only
// its Ethernet header is in the skb's linear data and the rest in pages: a
// packet socket with a virtio-net header builds frames of a page or more
// that way. It is how a tc program meets headers outside the linear data.
// The frame must be longer than a page, and the pair's MTU large enough.
func (p *Pair) SendRawPaged(t testing.TB, frame []byte, n int) {
	t.Helper()
	p.sendRaw(t, false, frame, n, true, false)
}

// SetMTU sets both ends' MTU.
func (p *Pair) SetMTU(t testing.TB, mtu int) {
	t.Helper()
	p.must(t, setMTU(p.Local, mtu))
	p.SetPeerMTU(t, mtu)
}

// SetPeerMTU sets the peer end's MTU alone: veth drops (and counts as
// tx_dropped) a frame the local end sends longer than that.
func (p *Pair) SetPeerMTU(t testing.TB, mtu int) {
	t.Helper()
	p.must(t, RunIn(p.PeerNS, func() error { return setMTU(p.Peer, mtu) }))
}

func setMTU(name string, mtu int) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetMTU(l, mtu)
}

// SendRawDropped sends frame n times from the local end, where a program on
// the egress hook drops it: each send must report the drop (ENOBUFS).
func (p *Pair) SendRawDropped(t testing.TB, frame []byte, n int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	p.must(t, err)
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Ifindex: p.LocalIndex, Halen: 6}
	for i := 0; i < n; i++ {
		if err := unix.Sendto(fd, frame, 0, sa); !errors.Is(err, unix.ENOBUFS) {
			t.Fatalf("%s: send frame %d: %v, want it dropped (ENOBUFS)", p.Local, i, err)
		}
	}
}

// SendRawLossy sends frame n times like SendRaw, but takes a refusal
// (ENOBUFS) as a frame lost, not an error: while a qdisc is added or
// deleted on an interface that is up, the kernel briefly stops its
// transmit queues and drops what is sent meanwhile (without counting it).
// It returns how many frames the kernel took.
func (p *Pair) SendRawLossy(t testing.TB, fromPeer bool, frame []byte, n int) int {
	t.Helper()
	return p.sendRaw(t, fromPeer, frame, n, false, true)
}

// sendRaw sends frame n times from one end, with only its link-layer
// header linear where paged, and returns how many the kernel took; lossy
// takes a refusal (ENOBUFS) as a frame lost, where it is otherwise an
// error.
func (p *Pair) sendRaw(t testing.TB, fromPeer bool, frame []byte, n int, paged, lossy bool) int {
	t.Helper()
	taken := 0
	send := func(ifindex int) error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		buf := frame
		if paged {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				return fmt.Errorf("PACKET_VNET_HDR: %w", err)
			}
			// An all-zero struct virtio_net_hdr: no offloads, hdr_len 0,
			// so the kernel makes only the link-layer header linear.
			buf = append(make([]byte, 10), frame...)
		}
		sa := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}
		for i := 0; i < n; i++ {
			switch err := unix.Sendto(fd, buf, 0, sa); {
			case err == nil:
				taken++
			case lossy && errors.Is(err, unix.ENOBUFS):
			default:
				return fmt.Errorf("send raw frame %d: %w", i, err)
			}
		}
		return nil
	}
	if fromPeer {
		p.must(t, RunIn(p.PeerNS, func() error { return send(p.PeerIndex) }))
	} else {
		p.must(t, send(p.LocalIndex))
	}
	return taken
}

func (p *Pair) must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", p.Local, err)
	}
}
