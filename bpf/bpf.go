// Package bpf holds ebpfnet's eBPF programs (ebpfnet.c), their bpf2go
// output, and the loader around them: the maps, what a row and a slot hold,
// and the pin path they may be pinned in.
//
// The programs count frames per interface, direction, IP version and
// transport in a per-CPU array. Each (receive, transmit, XDP) is loaded once
// and serves every interface: it finds the interface's row and framing by
// ifindex in the slots maps, which user space fills before attaching.
//
// Minimum kernels for each hook: TCX 6.6; bpf_link XDP 5.9; tc clsact with a
// direct-action filter anything newer than 4.x. The helpers the slow path
// uses (bpf_xdp_load_bytes, bpf_xdp_get_buff_len) want 5.18. ebpfnet is
// tested on 6.1 (tc, XDP) and 6.18 (tcx, tc, XDP), loaded both by root and
// with CAP_BPF and CAP_NET_ADMIN alone.
package bpf

import (
	"bytes"
)

// Direction is a counters row's half: what the interface received or
// transmitted. The values match enum ebpfnet_direction.
type Direction int

const (
	Receive Direction = iota
	Transmit
	NumDirections = 2
)

func (d Direction) String() string {
	if d == Receive {
		return "receive"
	}
	return "transmit"
}

// Class is what the parser found in a frame: non-IP, or an IP version and
// a transport. The values match enum ebpfnet_class in ebpfnet.h.
type Class int

// Classes, in the order of struct ebpfnet_classes.
const (
	ClassNonIP Class = iota
	ClassIPv4Unknown
	ClassIPv4TCP
	ClassIPv4UDP
	ClassIPv4ICMP
	ClassIPv4Other
	ClassIPv6Unknown
	ClassIPv6TCP
	ClassIPv6UDP
	ClassIPv6ICMP
	ClassIPv6Other
	NumClasses
)

var classNames = [NumClasses][2]string{
	ClassNonIP:       {"", ""},
	ClassIPv4Unknown: {"ipv4", ""},
	ClassIPv4TCP:     {"ipv4", "tcp"},
	ClassIPv4UDP:     {"ipv4", "udp"},
	ClassIPv4ICMP:    {"ipv4", "icmp"},
	ClassIPv4Other:   {"ipv4", "other"},
	ClassIPv6Unknown: {"ipv6", ""},
	ClassIPv6TCP:     {"ipv6", "tcp"},
	ClassIPv6UDP:     {"ipv6", "udp"},
	ClassIPv6ICMP:    {"ipv6", "icmp"},
	ClassIPv6Other:   {"ipv6", "other"},
}

// NetworkType is the class's network.type value, "" for non-IP frames.
func (c Class) NetworkType() string { return classNames[c][0] }

// Transport is the class's network.transport value, "" for non-IP frames
// and for IP packets whose header was too short to read it.
func (c Class) Transport() string { return classNames[c][1] }

func (c Class) String() string {
	switch {
	case c == ClassNonIP:
		return "non-ip"
	case c.Transport() == "":
		return c.NetworkType() + "/unknown"
	}
	return c.NetworkType() + "/" + c.Transport()
}

// Count is one class's packets and bytes.
type Count struct {
	Packets uint64
	Bytes   uint64
}

// Add adds o to c.
func (c *Count) Add(o Count) {
	c.Packets += o.Packets
	c.Bytes += o.Bytes
}

// Counters is one interface's row of the counters map, laid out as
// struct ebpfnet_counters.
type Counters [NumDirections][NumClasses]Count

// Add adds o to c, class by class.
func (c *Counters) Add(o *Counters) {
	for d := range c {
		for k := range c[d] {
			c[d][k].Add(o[d][k])
		}
	}
}

// Total returns the packets and bytes in direction d, over every class.
func (c *Counters) Total(d Direction) Count {
	var t Count
	for _, x := range c[d] {
		t.Add(x)
	}
	return t
}

// Hook is how one direction of an interface is attached. The values are
// kept in the interfaces map, so they must not change.
type Hook uint32

const (
	HookNone Hook = iota
	HookTCX
	HookTC
	HookXDP
)

func (h Hook) String() string {
	switch h {
	case HookTCX:
		return "tcx"
	case HookTC:
		return "tc"
	case HookXDP:
		return "xdp"
	}
	return "none"
}

// InterfaceRow is one row of the interfaces map, laid out as struct
// ebpfnet_interface: which interface a counters row belongs to, since when,
// and what is ebpfnet's on its hooks.
type InterfaceRow struct {
	Ifindex       uint32
	Hooks         [NumDirections]Hook
	Layout        uint32
	StartUnixNano uint64
	Name          [16]byte
	Owned         [NumDirections]Owned
}

// Owned identifies what ebpfnet put on one hook of an interface, as
// struct ebpfnet_owned: a later process adopts, replaces or removes that
// and nothing else, whatever else is on the hook.
type Owned struct {
	ProgramID  uint32 // the program attached (or about to be)
	TCPriority uint32 // tc only: the filter's priority
	TCHandle   uint32 // tc only: the filter's handle
	_          uint32
}

// InterfaceName returns r's name as a string.
func (r *InterfaceRow) InterfaceName() string {
	n, _, _ := bytes.Cut(r.Name[:], []byte{0})
	return string(n)
}

// SetName stores name, cut to the kernel's IFNAMSIZ.
func (r *InterfaceRow) SetName(name string) {
	r.Name = [16]byte{}
	copy(r.Name[:15], name)
}
