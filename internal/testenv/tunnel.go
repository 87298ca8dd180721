//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tunnel is a point-to-point tunnel over a Pair: an interface without a
// link-layer header on each side, Local in the test's namespace with
// TunIPv4, the other in the peer's with TunPeerIPv4.
type Tunnel struct {
	Local string
	Index int
}

// NewIPIP makes an ipip tunnel over p. It skips t where the kernel has no
// ipip (a kernel without the module is not a missing privilege).
func NewIPIP(t testing.TB, p *Pair, name string) *Tunnel {
	t.Helper()
	mk := func(local, remote net.IP) netlink.Link {
		return &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: name}, Local: local, Remote: remote, Ttl: 64}
	}
	return newTunnel(t, p, name, "ipip", mk(LocalIPv4, PeerIPv4), mk(PeerIPv4, LocalIPv4), nil)
}

// NewWireGuard makes a WireGuard tunnel over p, configured with the wg
// tool (wireguard-tools). It skips t where the kernel has no WireGuard.
func NewWireGuard(t testing.TB, p *Pair, name string) *Tunnel {
	t.Helper()
	keys := map[string]string{}
	var wg string
	// Called first for the local side, once the kernel has made the device:
	// without the module, the test skips before it looks for the tool.
	configure := func(local bool) error {
		if wg == "" {
			var err error
			if wg, err = exec.LookPath("wg"); err != nil {
				Missing(t, "no wg (wireguard-tools)")
			}
			if err := wireGuardKeys(wg, t.TempDir(), keys); err != nil {
				return err
			}
		}
		side, other, port, otherIP, otherPort, allowed := "local", "peer", 51820, PeerIPv4, 51821, TunPeerIPv4
		if !local {
			side, other, port, otherIP, otherPort, allowed = "peer", "local", 51821, LocalIPv4, 51820, TunIPv4
		}
		out, err := exec.Command(wg, "set", name, "private-key", keys[side+".key"], "listen-port", fmt.Sprint(port),
			"peer", keys[other+".pub"], "endpoint", fmt.Sprintf("%s:%d", otherIP, otherPort),
			"allowed-ips", allowed.String()+"/32").CombinedOutput()
		if err != nil {
			return fmt.Errorf("wg set %s: %v: %s", side, err, out)
		}
		return nil
	}
	mk := func() netlink.Link { return &netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name}} }
	return newTunnel(t, p, name, "wireguard", mk(), mk(), configure)
}

// wireGuardKeys makes a key pair for each side: keys["local.key"] is the
// private key's file, keys["local.pub"] the public key; likewise "peer".
func wireGuardKeys(wg, dir string, keys map[string]string) error {
	for _, side := range []string{"local", "peer"} {
		priv, err := exec.Command(wg, "genkey").Output()
		if err != nil {
			return fmt.Errorf("wg genkey: %w", err)
		}
		pub := exec.Command(wg, "pubkey")
		pub.Stdin = strings.NewReader(string(priv))
		pubKey, err := pub.Output()
		if err != nil {
			return fmt.Errorf("wg pubkey: %w", err)
		}
		keys[side+".pub"] = strings.TrimSpace(string(pubKey))
		keys[side+".key"] = filepath.Join(dir, side+".key")
		if err := os.WriteFile(keys[side+".key"], priv, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func newTunnel(t testing.TB, p *Pair, name, kind string, local, peer netlink.Link, configure func(local bool) error) *Tunnel {
	t.Helper()
	if err := netlink.LinkAdd(local); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT) {
			t.Skipf("this kernel has no %s: %v (the 6.1 VM of make test-kernel has)", kind, err)
		}
		t.Fatalf("add %s %s: %v", kind, name, err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(local) })
	// setup runs in the namespace that holds the tunnel named name.
	setup := func(addr net.IP, isLocal bool) error {
		// IPv6 off: the tunnel then carries only what the test sends.
		if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6"), []byte("1"), 0o644); err != nil {
			return err
		}
		if configure != nil {
			if err := configure(isLocal); err != nil {
				return err
			}
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: addr, Mask: net.CIDRMask(24, 32)}}); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	}
	if err := setup(TunIPv4, true); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
	if err := RunIn(p.PeerNS, func() error {
		if err := netlink.LinkAdd(peer); err != nil {
			return err
		}
		return setup(TunPeerIPv4, false)
	}); err != nil {
		t.Fatalf("%s %s in the peer's namespace: %v", kind, name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return &Tunnel{Local: name, Index: l.Attrs().Index}
}
