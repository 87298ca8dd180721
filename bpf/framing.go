package bpf

// Framing is what a frame on an interface starts with, which says how the
// programs parse it. The values match enum ebpfnet_framing.
type Framing uint32

const (
	FramingUnused   Framing = iota // no interface: not counted
	FramingEthernet                // an Ethernet header
	FramingIP                      // an IP header: tun, WireGuard, ipip, sit, ...
	FramingOther                   // counted, never classified
)

// FramingOf returns the framing of an interface whose link-layer type
// netlink names encap (vishvananda/netlink's LinkAttrs.EncapType, from
// ARPHRD_*).
func FramingOf(encap string) Framing {
	switch encap {
	case "ether", "loopback":
		return FramingEthernet
	// Devices without a link-layer header: tun and WireGuard (ARPHRD_NONE),
	// ipip, ip6tnl, sit, and the raw-IP modems (ARPHRD_RAWIP, 519).
	case "none", "ipip", "tunnel6", "sit", "unknown519":
		return FramingIP
	}
	// gre in NBMA mode, InfiniBand, PPP, CAN, ...: their frames are not
	// read, so never misread.
	return FramingOther
}

func (f Framing) String() string {
	switch f {
	case FramingEthernet:
		return "ethernet"
	case FramingIP:
		return "ip"
	case FramingOther:
		return "other"
	}
	return "unused"
}
