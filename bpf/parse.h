// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The direct parse: Ethernet, VLAN tags, IPv4 and IPv6 headers read from
// the packet at constant offsets, down to a class. Included by ebpfnet.c,
// after count and the maps.

#pragma once

// transport maps an IP protocol number to a transport; icmp is the number
// ICMP goes by in this IP version.
static __always_inline __u32 transport(__u8 proto, __u8 icmp)
{
	if (proto == IPPROTO_TCP)
		return TRANSPORT_TCP;
	if (proto == IPPROTO_UDP)
		return TRANSPORT_UDP;
	if (proto == icmp)
		return TRANSPORT_ICMP;
	return TRANSPORT_OTHER;
}

// The extension headers the walk skips, as a bit set over header numbers
// (all below 64): one test instead of five comparisons.
#define IPV6_EXT_MASK                                                                      \
	((1ULL << IPPROTO_HOPOPTS) | (1ULL << IPPROTO_ROUTING) | (1ULL << IPPROTO_FRAGMENT) | \
	 (1ULL << IPPROTO_AH) | (1ULL << IPPROTO_DSTOPTS))

static __always_inline bool is_ipv6_ext(__u8 nexthdr)
{
	return nexthdr < 64 && ((1ULL << nexthdr) & IPV6_EXT_MASK);
}

// ext_size is the length of an extension header of type nexthdr whose
// length byte is hdrlen.
static __always_inline __u32 ext_size(__u8 nexthdr, __u8 hdrlen)
{
	if (nexthdr == IPPROTO_FRAGMENT)
		return 8;
	if (nexthdr == IPPROTO_AH)
		return (hdrlen + 2) * 4;
	return (hdrlen + 1) * 8;
}

static __always_inline bool is_vlan(__u16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

// ---- The direct parse: packet pointers, constant offsets only. ----
//
// Each function is always inlined with a constant off. A header that lies
// in the frame (off + its size <= len) but past the linear data (data_end)
// cannot be read directly: that returns TRANSPORT_SLOW / CLASS_SLOW.

// unread is what a failed read of n bytes at off means: the frame is
// shorter (fallback), or the bytes are there but not linear (slow path).
#define unread(off, n, len, fallback) ((off) + (n) <= (len) ? TRANSPORT_SLOW : (fallback))

static __always_inline __u32 ipv4_at(void *data, void *data_end, __u32 len, const __u32 off)
{
	__u8 *h = data + off;

	if ((void *)(h + 20) > data_end)
		return unread(off, 20, len, TRANSPORT_UNKNOWN);
	// The whole header, options included, must be there for the protocol
	// field to be trusted. Fragments are classified by that field too.
	// Most packets have no options: version 4, 5 words, all read.
	if (h[0] != 0x45) {
		__u32 ihl = h[0] & 0xf;
		if (h[0] >> 4 != 4 || ihl < 5 || off + ihl * 4 > len)
			return TRANSPORT_UNKNOWN;
	}
	return transport(h[9], IPPROTO_ICMP);
}

static __always_inline __u32 ipv6_at(void *data, void *data_end, __u32 len, const __u32 off)
{
	__u8 *h = data + off;

	if ((void *)(h + 40) > data_end)
		return unread(off, 40, len, TRANSPORT_UNKNOWN);
	if (h[0] >> 4 != 6)
		return TRANSPORT_UNKNOWN;
	// The common transports first: they end the walk before it starts.
	__u8 nexthdr = h[6];
	if (nexthdr == IPPROTO_TCP)
		return TRANSPORT_TCP;
	if (nexthdr == IPPROTO_UDP)
		return TRANSPORT_UDP;
	if (!is_ipv6_ext(nexthdr))
		return transport(nexthdr, IPPROTO_ICMPV6);

	// The first extension header (hop-by-hop for MLD, a fragment header)
	// starts at a constant offset too; a longer chain takes the slow path.
	__u8 *ext = h + 40;
	if ((void *)(ext + 2) > data_end)
		return unread(off + 40, 2, len, TRANSPORT_UNKNOWN);
	if (off + 40 + ext_size(nexthdr, ext[1]) > len)
		return TRANSPORT_UNKNOWN;
	nexthdr = ext[0];
	if (!is_ipv6_ext(nexthdr))
		return transport(nexthdr, IPPROTO_ICMPV6);
	return TRANSPORT_SLOW;
}

static __always_inline __u32 with_transport(__u32 ip_class, __u32 t)
{
	return t == TRANSPORT_SLOW ? CLASS_SLOW : ip_class + t;
}

// l3_at classifies what follows an EtherType proto at off.
#define l3_at(proto, off)                                                        \
	do {                                                                     \
		if (proto == bpf_htons(ETH_P_IP))                                \
			return with_transport(CLASS_IPV4, ipv4_at(data, data_end, len, off)); \
		if (proto == bpf_htons(ETH_P_IPV6))                              \
			return with_transport(CLASS_IPV6, ipv6_at(data, data_end, len, off)); \
	} while (0)

static __always_inline __u32 classify_ethernet(void *data, void *data_end, __u32 len)
{
	__u16 *p = data + 12;

	if ((void *)(p + 1) > data_end)
		return unread(12, 2, len, CLASS_NON_IP);
	__u16 proto = *p;
	l3_at(proto, 14);
	// Up to two VLAN tags (802.1ad, 802.1Q) are looked through, each depth
	// with its own constant offsets.
	if (!is_vlan(proto))
		return CLASS_NON_IP;
	p = data + 16;
	if ((void *)(p + 1) > data_end)
		return unread(16, 2, len, CLASS_NON_IP);
	proto = *p;
	l3_at(proto, 18);
	if (!is_vlan(proto))
		return CLASS_NON_IP;
	p = data + 20;
	if ((void *)(p + 1) > data_end)
		return unread(20, 2, len, CLASS_NON_IP);
	proto = *p;
	l3_at(proto, 22);
	return CLASS_NON_IP;
}

// classify_ip reads a frame that starts with its IP header: the version
// nibble says which.
static __always_inline __u32 classify_ip(void *data, void *data_end, __u32 len)
{
	__u8 *h = data;

	if ((void *)(h + 1) > data_end)
		return unread(0, 1, len, CLASS_NON_IP);
	if (h[0] >> 4 == 4)
		return with_transport(CLASS_IPV4, ipv4_at(data, data_end, len, 0));
	if (h[0] >> 4 == 6)
		return with_transport(CLASS_IPV6, ipv6_at(data, data_end, len, 0));
	return CLASS_NON_IP;
}

static __always_inline __u32 classify(__u32 framing, void *data, void *data_end, __u32 len)
{
	if (framing == FRAMING_ETHERNET)
		return classify_ethernet(data, data_end, len);
	if (framing == FRAMING_IP)
		return classify_ip(data, data_end, len);
	return CLASS_NON_IP;
}
