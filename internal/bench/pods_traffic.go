//go:build linux

package main

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// plainPairs are veth pairs that are nobody's pod: "vethq0000"... here,
// their peers together in one namespace, every end up.
type plainPairs struct {
	peers netns.NsHandle
	names []string
}

func newPlainPairs(n int) (*plainPairs, error) {
	ns, err := testenv.CreateNetns()
	if err != nil {
		return nil, err
	}
	pp := &plainPairs{peers: ns}
	for i := range n {
		name, peer := fmt.Sprintf("vethq%04d", i), fmt.Sprintf("pq%04d", i)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(ns)}
		if err := netlink.LinkAdd(veth); err != nil {
			pp.close()
			return nil, fmt.Errorf("add %s: %w", name, err)
		}
		pp.names = append(pp.names, name)
		if err := setLinkUp(name); err != nil {
			pp.close()
			return nil, err
		}
		if err := testenv.RunIn(ns, func() error { return setLinkUp(peer) }); err != nil {
			pp.close()
			return nil, err
		}
	}
	return pp, nil
}

func setLinkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// send puts one frame of every class on every pair, both directions.
func (pp *plainPairs) send() error {
	if err := sendClasses(pp.names); err != nil {
		return err
	}
	peers := make([]string, len(pp.names))
	for i := range peers {
		peers[i] = fmt.Sprintf("pq%04d", i)
	}
	return testenv.RunIn(pp.peers, func() error { return sendClasses(peers) })
}

func (pp *plainPairs) close() {
	for _, name := range pp.names {
		if l, err := netlink.LinkByName(name); err == nil {
			_ = netlink.LinkDel(l)
		}
	}
	pp.peers.Close()
}

// sendPods puts one frame of every class on every pod's host veth, both
// directions: transmitted from the host end, and from the pod's eth0.
func sendPods(ps []*benchPod) error {
	var veths []string
	for _, p := range ps {
		veths = append(veths, p.veth)
	}
	if err := sendClasses(veths); err != nil {
		return err
	}
	for _, p := range ps {
		ns, err := netns.GetFromPath(p.nsPath)
		if err != nil {
			return err
		}
		err = testenv.RunIn(ns, func() error { return sendClasses([]string{"eth0"}) })
		ns.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// sendClasses sends classFrames (collection.go) on each named interface
// of the calling thread's namespace. The frames' source address is zero,
// so a bridge drops them after the veth counted them.
func sendClasses(names []string) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		for _, fr := range classFrames {
			if err := unix.Sendto(fd, fr, 0, &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6}); err != nil {
				return fmt.Errorf("send on %s: %w", name, err)
			}
		}
	}
	return nil
}
