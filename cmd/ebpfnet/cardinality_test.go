package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"google.golang.org/grpc"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Every series is kept up to max_interfaces: 300 interfaces each receiving
// and sending IPv4 and IPv6 TCP, UDP, ICMP and other frames are 4800 series
// per metric, above the SDK's default limit of 2000, and every one is
// exported, none folded into an otel.metric.overflow series. And a
// collection too large for one request arrives in several: its 10,800
// points (with errors and drops) are about 1.5 MB in one request, which a
// receiver taking at most 1.25 MiB refuses; in requests of 2048 points
// each is about 290 KB.
func TestEverySeriesKept(t *testing.T) {
	testenv.Privileged(t)
	const n = 300
	peers := testenv.NewNetns(t)
	var peerIndex, localIndex []int
	for i := range n {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("card%03d", i)}, PeerName: fmt.Sprintf("card%03dp", i), PeerNamespace: netlink.NsFd(peers)}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(veth) })
		// No IPv6 on either end (and no IPv4 address): nothing talks but
		// the test.
		if err := quiet(veth.Name); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(veth); err != nil {
			t.Fatal(err)
		}
		localIndex = append(localIndex, veth.Attrs().Index)
	}
	err := testenv.RunIn(peers, func() error {
		for i := range n {
			l, err := netlink.LinkByName(fmt.Sprintf("card%03dp", i))
			if err != nil {
				return err
			}
			if err := quiet(l.Attrs().Name); err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			peerIndex = append(peerIndex, l.Attrs().Index)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	srv := otlptest.Start(t, "127.0.0.1:0", grpc.MaxRecvMsgSize(1280<<10))
	sc := startSidecar(t, otlpEnv(srv.Addr), "--interfaces", "card*", "--interval", "1s")
	waitValues(t, srv, attachedIs(n))

	// One frame of each class into every interface, from its peer.
	classes := []struct {
		frame              []byte
		network, transport string
	}{
		{testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(6, 5, 20)), "ipv4", "tcp"},
		{testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(17, 5, 8)), "ipv4", "udp"},
		{testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(1, 5, 8)), "ipv4", "icmp"},
		{testenv.Cat(testenv.Eth(0x0800), testenv.IPv4(132, 5, 12)), "ipv4", "other"},
		{testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(6, 20)), "ipv6", "tcp"},
		{testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(17, 8)), "ipv6", "udp"},
		{testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(58, 8)), "ipv6", "icmp"},
		{testenv.Cat(testenv.Eth(0x86dd), testenv.IPv6(132, 12)), "ipv6", "other"},
	}
	sendAll := func(index []int) error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, index := range index {
			for _, c := range classes {
				if err := unix.Sendto(fd, c.frame, 0, &unix.SockaddrLinklayer{Ifindex: index, Halen: 6}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := testenv.RunIn(peers, func() error { return sendAll(peerIndex) }); err != nil {
		t.Fatal(err)
	}
	if err := sendAll(localIndex); err != nil {
		t.Fatal(err)
	}

	key := func(metric string, i int, direction, network, transport string) string {
		return otlptest.Key(metric, "network.interface.name="+fmt.Sprintf("card%03d", i),
			"network.io.direction="+direction, "network.type="+network, "network.transport="+transport)
	}
	got := waitValues(t, srv, func(v map[string]int64) bool {
		for i := range n {
			for _, c := range classes {
				for _, d := range []string{"receive", "transmit"} {
					if v[key(otlptest.PacketsMetric, i, d, c.network, c.transport)] != 1 ||
						v[key(otlptest.BytesMetric, i, d, c.network, c.transport)] != int64(len(c.frame)) {
						return false
					}
				}
			}
		}
		return true
	})
	series := 0
	for k := range got {
		if strings.Contains(k, "otel.metric.overflow") {
			t.Errorf("overflow series exported: %s", k)
		}
		if strings.HasPrefix(k, otlptest.PacketsMetric+"{") {
			series++
		}
	}
	if series != 2*n*len(classes) {
		t.Errorf("%d packet series exported, want %d", series, 2*n*len(classes))
	}
	// Attaching 300 interfaces took longer than an interval: no false
	// export failure for it.
	if strings.Contains(sc.stderr.String(), "export failing") {
		t.Errorf("export failures logged:\n%s", sc.stderr.String())
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// quiet disables IPv6 on the interface, in the calling thread's namespace.
func quiet(name string) error {
	return os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6"), []byte("1"), 0o644)
}
