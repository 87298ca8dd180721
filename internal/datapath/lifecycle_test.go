package datapath

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Interfaces that come and go while ebpfnet runs are attached when they
// appear and forgotten when removed, and their rows are reused.
func TestInterfaceChurn(t *testing.T) {
	testenv.Privileged(t)
	peers := testenv.NewNetns(t)
	d := open(t, cfgFor(config.AttachAuto, "churn*"))
	programs := countBPFObjects(t)

	const n = 50
	addVeth := func(name, peer string) {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(peers)}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	}
	// Created in a burst, as a node creating pods would.
	for i := range n {
		addVeth(fmt.Sprintf("churn%02d", i), fmt.Sprintf("churn%02dp", i))
	}
	testenv.WaitFor(t, fmt.Sprintf("%d interfaces attached", n), func() bool { return len(snap(t, d).Interfaces) == n })
	for _, a := range snap(t, d).Interfaces {
		if got := testenv.Attachments(t, a.Index); len(got) != 2 {
			t.Errorf("%s: attached %v, want ingress and egress", a.Name, got)
		}
	}
	// Attaching loads nothing: the process holds the same programs and
	// maps with 50 interfaces as with none.
	if got := countBPFObjects(t); got != programs {
		t.Errorf("%d BPF programs and maps open with %d interfaces attached, %d with none", got, n, programs)
	}

	// Remove every other one: it leaves the snapshot and its row is freed.
	rowOf := map[string]uint32{}
	for _, a := range d.mgr.AppendAttached(nil) {
		rowOf[a.Name] = a.Row
	}
	for i := 0; i < n; i += 2 {
		name := fmt.Sprintf("churn%02d", i)
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "removed interfaces to leave the snapshot", func() bool { return len(snap(t, d).Interfaces) == n/2 })
	rows, err := d.objs.ReadInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 2 {
		name := fmt.Sprintf("churn%02d", i)
		if snap(t, d).Find(name) != nil {
			t.Errorf("%s still in the snapshot", name)
		}
		if row := rows[rowOf[name]]; row != (bpf.InterfaceRow{}) {
			t.Errorf("%s's row %d not cleared: %+v", name, rowOf[name], row)
		}
	}

	// New ones take the freed rows: the map does not grow with churn.
	for i := range n / 2 {
		addVeth(fmt.Sprintf("churn%02dx", i), fmt.Sprintf("cx%02dp", i))
	}
	testenv.WaitFor(t, fmt.Sprintf("%d interfaces attached again", n), func() bool { return len(snap(t, d).Interfaces) == n })
	for _, a := range d.mgr.AppendAttached(nil) {
		if a.Row >= n {
			t.Errorf("%s got row %d: rows were not reused", a.Name, a.Row)
		}
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "churn") {
			requireDetached(t, l.Attrs().Index)
		}
	}
}

// With max_interfaces, the interfaces over it are not attached and the
// refusals are counted.
func TestMaxInterfaces(t *testing.T) {
	testenv.Privileged(t)
	peers := testenv.NewNetns(t)
	for i := range 3 {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("cap%d", i)}, PeerName: fmt.Sprintf("cap%dp", i), PeerNamespace: netlink.NsFd(peers)}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	}
	cfg := cfgFor(config.AttachAuto, "cap*")
	cfg.MaxInterfaces = 2
	d := open(t, cfg)
	s := snap(t, d)
	if len(s.Interfaces) != 2 {
		t.Errorf("%d interfaces attached, want 2", len(s.Interfaces))
	}
	if got := s.AttachErrors[attach.ErrorMaxInterfaces]; got != 1 {
		t.Errorf("attach errors %v, want one %s", s.AttachErrors, attach.ErrorMaxInterfaces)
	}
}

// XDP attaches natively where the driver can (veth) and generically where
// it cannot (ifb).
func TestXDPNativeOrGeneric(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "xdpn0")
	ifb := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "xdpg0"}}
	if err := netlink.LinkAdd(ifb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(ifb) })
	if err := netlink.LinkSetUp(ifb); err != nil {
		t.Fatal(err)
	}
	d := open(t, cfgFor(config.AttachXDP, p.Local, "xdpg0"))
	if n := len(snap(t, d).Interfaces); n != 2 {
		t.Fatalf("%d interfaces attached, want 2", n)
	}
	for name, want := range map[string]uint32{p.Local: nl.XDP_ATTACHED_DRV, "xdpg0": nl.XDP_ATTACHED_SKB} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x == nil || !x.Attached || x.AttachMode != want {
			t.Errorf("%s: xdp %+v, want attach mode %d", name, x, want)
		}
	}
}
