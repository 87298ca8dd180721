//go:build linux

package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addresses of a Tun's two sides: the device's own, and the host behind it.
var (
	TunIPv4     = net.ParseIP("203.0.113.1")
	TunPeerIPv4 = net.ParseIP("203.0.113.2")
)

// Tun is a tun device: an interface without a link-layer header, whose
// frames are IP packets. Packets written to File arrive on the interface;
// packets the kernel sends through it are read and dropped.
type Tun struct {
	Name  string
	Index int
	File  *os.File
}

// NewTun creates a tun device (IFF_TUN|IFF_NO_PI) in the calling thread's
// network namespace, up, with TunIPv4/24 and IPv6 off so that it sends
// nothing on its own. It goes when t ends.
func NewTun(t testing.TB, name string) *Tun {
	t.Helper()
	// Non-blocking, and wrapped in an os.File only once attached: then Go's
	// poller can wait on it, and Close ends the reader below.
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		Missing(t, fmt.Sprintf("no tun device: %v", err))
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		t.Fatalf("TUNSETIFF %s: %v", name, errno)
	}
	f := os.NewFile(uintptr(fd), name)
	t.Cleanup(func() { f.Close() })
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6"), []byte("1"), 0o644); err != nil {
		t.Fatalf("disable IPv6 on %s: %v", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: TunIPv4, Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	tun := &Tun{Name: name, Index: l.Attrs().Index, File: f}
	// tun counts a packet as transmitted when it is read from the device:
	// read everything, as the other end of a real tunnel would.
	go func() {
		b := make([]byte, 65536)
		for {
			if _, err := f.Read(b); err != nil {
				return
			}
		}
	}()
	return tun
}

// Write hands each packet to the kernel as received on the device, n times.
func (tun *Tun) Write(t testing.TB, packet []byte, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := tun.File.Write(packet); err != nil {
			t.Fatalf("write to %s: %v", tun.Name, err)
		}
	}
}
