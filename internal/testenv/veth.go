//go:build linux

package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the two ends of a Pair: documentation ranges only.
var (
	LocalIPv4 = net.ParseIP("198.51.100.1")
	PeerIPv4  = net.ParseIP("198.51.100.2")
	LocalIPv6 = net.ParseIP("2001:db8:eb::1")
	PeerIPv6  = net.ParseIP("2001:db8:eb::2")
)

// Pair is a veth pair: Local in the test process's own namespace, where
// ebpfnet attaches, and Peer in a namespace of its own, the other host.
type Pair struct {
	Local, Peer       string
	LocalMAC, PeerMAC net.HardwareAddr
	LocalIndex        int
	PeerIndex         int
	PeerNS            netns.NsHandle
}

// NewPair creates a veth pair named local / local+"p", with static
// neighbours and no IPv6 autoconfiguration, so that the only traffic on it
// is what the test sends. It is removed when t ends.
func NewPair(t testing.TB, local string) *Pair {
	t.Helper()
	p, err := CreatePair(local)
	if err != nil {
		t.Fatalf("veth pair %s: %v", local, err)
	}
	t.Cleanup(p.Close)
	return p
}

// CreatePair is NewPair outside a test (the benchmarks): Close removes it.
func CreatePair(local string) (*Pair, error) {
	ns, err := CreateNetns()
	if err != nil {
		return nil, err
	}
	p := &Pair{Local: local, Peer: local + "p", PeerNS: ns}
	if err := p.create(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close removes the pair and lets the peer's namespace go.
func (p *Pair) Close() {
	if l, err := netlink.LinkByName(p.Local); err == nil {
		_ = netlink.LinkDel(l)
	}
	p.PeerNS.Close()
}

func (p *Pair) create() error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.Local},
		PeerName:      p.Peer,
		PeerNamespace: netlink.NsFd(p.PeerNS),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	if err := p.configure(p.Local, LocalIPv4, LocalIPv6, &p.LocalMAC, &p.LocalIndex); err != nil {
		return err
	}
	if err := RunIn(p.PeerNS, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		return p.configure(p.Peer, PeerIPv4, PeerIPv6, &p.PeerMAC, &p.PeerIndex)
	}); err != nil {
		return err
	}
	if err := p.neighbours(PeerIPv4, PeerIPv6, p.Local, p.PeerMAC); err != nil {
		return err
	}
	if err := RunIn(p.PeerNS, func() error {
		return p.neighbours(LocalIPv4, LocalIPv6, p.Peer, p.LocalMAC)
	}); err != nil {
		return err
	}
	for _, up := range []func() error{
		func() error { return setUp(p.Local) },
		func() error { return RunIn(p.PeerNS, func() error { return setUp(p.Peer) }) },
	} {
		if err := up(); err != nil {
			return err
		}
	}
	return nil
}

// configure runs in the namespace that holds name.
func (p *Pair) configure(name string, v4, v6 net.IP, mac *net.HardwareAddr, index *int) error {
	// No link-local address, router solicitations or RAs: IPv6 would
	// otherwise talk on its own and the per-class counts would not be exact.
	for key, value := range map[string]string{
		"accept_ra":                         "0",
		"addr_gen_mode":                     "1",
		"router_solicitations":              "0",
		"dad_transmits":                     "0",
		"accept_dad":                        "0",
		"mldv1_unsolicited_report_interval": "0",
		"mldv2_unsolicited_report_interval": "0",
	} {
		path := filepath.Join("/proc/sys/net/ipv6/conf", name, key)
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", path, err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	// NOARP: the kernel then joins no solicited-node group and sends no
	// MLD report, which would otherwise arrive up to a second after the
	// link comes up. Neighbours are static, so nothing needs ARP or ND.
	if err := netlink.LinkSetARPOff(l); err != nil {
		return err
	}
	*mac, *index = l.Attrs().HardwareAddr, l.Attrs().Index
	for _, a := range []*netlink.Addr{
		{IPNet: &net.IPNet{IP: v4, Mask: net.CIDRMask(24, 32)}},
		{IPNet: &net.IPNet{IP: v6, Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD},
	} {
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", a.IPNet, name, err)
		}
	}
	return nil
}

func (p *Pair) neighbours(v4, v6 net.IP, dev string, mac net.HardwareAddr) error {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	for _, ip := range []net.IP{v4, v6} {
		n := &netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac}
		if err := netlink.NeighSet(n); err != nil {
			return fmt.Errorf("neighbour %s on %s: %w", ip, dev, err)
		}
	}
	return nil
}

func setUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// Stats are an interface's kernel counters: the oracle.
type Stats struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
}

// Sub returns s - o.
func (s Stats) Sub(o Stats) Stats {
	return Stats{s.RxPackets - o.RxPackets, s.RxBytes - o.RxBytes, s.TxPackets - o.TxPackets, s.TxBytes - o.TxBytes}
}

// LinkStats reads name's counters in the calling thread's namespace.
func LinkStats(t testing.TB, name string) Stats {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	s := l.Attrs().Statistics
	return Stats{s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes}
}

// WaitQuiet waits until name's counters stop moving for quiet, so that
// whatever the kernel sends on its own when a link comes up is over before a
// test takes its baseline.
func WaitQuiet(t testing.TB, name string, quiet time.Duration) {
	t.Helper()
	deadline := time.Now().Add(Patience)
	last, since := LinkStats(t, name), time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("%s never went quiet", name)
		}
		time.Sleep(20 * time.Millisecond)
		if s := LinkStats(t, name); s != last {
			last, since = s, time.Now()
		}
	}
}

// Reconnect makes the pair usable again after the local end went down and
// up: it puts back the static neighbours the kernel flushed when the link
// went down, and waits until a datagram passes each way. Both ends must be
// up, and that is not enough: the kernel marks an end up before it gives
// its transmit queue back (linkwatch sets the operstate, then activates the
// qdisc), and the peer's turn can come later than the local end's; what is
// sent before that is dropped. The probes are counted like any traffic.
func (p *Pair) Reconnect(t testing.TB) {
	t.Helper()
	up := func(index int) bool {
		l, err := netlink.LinkByIndex(index)
		return err == nil && l.Attrs().OperState == netlink.OperUp
	}
	WaitFor(t, p.Local+" and its peer to be up", func() bool {
		peerUp := false
		_ = RunIn(p.PeerNS, func() error { peerUp = up(p.PeerIndex); return nil })
		return up(p.LocalIndex) && peerUp
	})
	p.must(t, p.neighbours(PeerIPv4, PeerIPv6, p.Local, p.PeerMAC))
	for _, fromPeer := range []bool{true, false} {
		WaitFor(t, "a datagram to pass "+p.Local, func() bool {
			return p.sendUDPBetween(LocalIPv4, PeerIPv4, fromPeer, 1, 1, 200*time.Millisecond) == nil
		})
	}
}
