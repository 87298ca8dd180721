//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// ebpfnet's datapath: count every frame on an interface by direction, IP
// version and transport, exactly as the kernel's interface statistics count
// it, and never change what happens to the frame.
//
// One program object is loaded per attached interface with `slot` set to the
// interface's row in the counters map, so the hot path is a parse plus one
// per-CPU array lookup with a constant key, which the verifier inlines: no
// hash lookup, no atomic, no shared cache line.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

// Pass-through verdicts. TCX_NEXT (6.6+) and TC_ACT_UNSPEC are both -1, so one
// tc program serves both the tcx and the legacy clsact hook, and the
// programs behind ours on the same hook (Cilium, Calico, ...) still run.
#define TCX_NEXT (-1)
#define TC_ACT_UNSPEC (-1)

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define VLAN_HLEN 4

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60

typedef _Bool bool;
#define true 1
#define false 0

// Bounds that keep the parser's loops and offsets finite for the verifier.
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HEADERS 8
#define MAX_HEADER_OFFSET 1024

enum ebpfnet_direction {
	DIRECTION_RECEIVE = 0,
	DIRECTION_TRANSMIT = 1,
};

// Transport of an IP packet, as an offset within its IP version's classes.
enum ebpfnet_transport {
	TRANSPORT_UNKNOWN = 0, // header truncated or malformed: no transport attribute
	TRANSPORT_TCP = 1,
	TRANSPORT_UDP = 2,
	TRANSPORT_ICMP = 3,
	TRANSPORT_OTHER = 4,
};

// The row a frame is counted in; the order matches struct ebpfnet_classes.
enum ebpfnet_class {
	CLASS_NON_IP = 0,
	CLASS_IPV4 = 1, // + enum ebpfnet_transport
	CLASS_IPV6 = 6, // + enum ebpfnet_transport
	CLASS_COUNT = 11,
};

struct ebpfnet_count {
	__u64 packets;
	__u64 bytes;
};

// Named fields rather than an array so that `bpftool map dump` reads well;
// the program indexes it by enum ebpfnet_class.
struct ebpfnet_classes {
	struct ebpfnet_count non_ip;
	struct ebpfnet_count ipv4_unknown;
	struct ebpfnet_count ipv4_tcp;
	struct ebpfnet_count ipv4_udp;
	struct ebpfnet_count ipv4_icmp;
	struct ebpfnet_count ipv4_other;
	struct ebpfnet_count ipv6_unknown;
	struct ebpfnet_count ipv6_tcp;
	struct ebpfnet_count ipv6_udp;
	struct ebpfnet_count ipv6_icmp;
	struct ebpfnet_count ipv6_other;
};

struct ebpfnet_counters {
	struct ebpfnet_classes receive;
	struct ebpfnet_classes transmit;
};

// One row per attached interface, written by user space only. It says which
// interface a counters row belongs to and since when, so that pinned state
// can be picked up again by a restarted process and read by bpftool.
struct ebpfnet_interface {
	__u32 ifindex;
	__u32 receive_hook;  // enum in Go: 0 none, 1 tcx, 2 tc, 3 xdp
	__u32 transmit_hook; // likewise
	__u32 layout;        // layout version of these maps
	__u64 start_unix_ns; // when counting began for this interface
	char name[16];
};

// max_entries is max_interfaces, set by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ebpfnet_counters);
	__uint(max_entries, 1);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ebpfnet_interface);
	__uint(max_entries, 1);
} interfaces SEC(".maps");

// This program object's row in counters, set before loading.
volatile const __u32 slot = 0;

struct packet {
	void *ctx;
	void *data;
	void *data_end;
	__u32 len; // bytes of the frame from data on, in the linear part or not
	bool skb;  // frame may continue past data_end (non-linear skb)
};

// read copies n bytes at off into to, from the linear data when they are
// there and through bpf_skb_load_bytes when a tc frame's headers sit in
// paged data. It fails for bytes past the frame's end.
static __always_inline int read(struct packet *p, __u32 off, void *to, __u32 n)
{
	if (off > MAX_HEADER_OFFSET)
		return -1;
	if (p->data + off + n <= p->data_end) {
		__builtin_memcpy(to, p->data + off, n);
		return 0;
	}
	if (p->skb && off + n <= p->len)
		return bpf_skb_load_bytes(p->ctx, off, to, n);
	return -1;
}

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

static __always_inline __u32 ipv4_transport(struct packet *p, __u32 off)
{
	__u8 vihl, proto;

	if (read(p, off, &vihl, 1) || read(p, off + 9, &proto, 1))
		return TRANSPORT_UNKNOWN;
	// The whole header, options included, must be there for the protocol
	// field to be trusted. Fragments are classified by that field too.
	if (vihl >> 4 != 4 || (vihl & 0xf) < 5 || off + (vihl & 0xf) * 4 > p->len)
		return TRANSPORT_UNKNOWN;
	return transport(proto, IPPROTO_ICMP);
}

static __always_inline __u32 ipv6_transport(struct packet *p, __u32 off)
{
	__u8 vtc, nexthdr;
	__u8 ext[2];

	if (read(p, off, &vtc, 1) || read(p, off + 6, &nexthdr, 1))
		return TRANSPORT_UNKNOWN;
	if (vtc >> 4 != 6 || off + 40 > p->len)
		return TRANSPORT_UNKNOWN;
	off += 40;

	// Skip up to MAX_IPV6_EXT_HEADERS extension headers; a longer chain is
	// an IPv6 packet whose transport we chose not to look for: "other".
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (read(p, off, ext, 2))
				return TRANSPORT_UNKNOWN;
			off += (ext[1] + 1) * 8;
			break;
		case IPPROTO_FRAGMENT:
			if (read(p, off, ext, 1))
				return TRANSPORT_UNKNOWN;
			off += 8;
			break;
		case IPPROTO_AH:
			if (read(p, off, ext, 2))
				return TRANSPORT_UNKNOWN;
			off += (ext[1] + 2) * 4;
			break;
		default:
			return transport(nexthdr, IPPROTO_ICMPV6);
		}
		// The extension header just skipped must be whole.
		if (off > p->len)
			return TRANSPORT_UNKNOWN;
		nexthdr = ext[0];
	}
	return transport(nexthdr, IPPROTO_ICMPV6);
}

static __always_inline __u32 classify(struct packet *p)
{
	__u16 proto;
	__u32 off = ETH_HLEN;

	if (read(p, ETH_HLEN - 2, &proto, 2))
		return CLASS_NON_IP;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (read(p, off + 2, &proto, 2))
			return CLASS_NON_IP;
		off += VLAN_HLEN;
	}

	if (proto == bpf_htons(ETH_P_IP))
		return CLASS_IPV4 + ipv4_transport(p, off);
	if (proto == bpf_htons(ETH_P_IPV6))
		return CLASS_IPV6 + ipv6_transport(p, off);
	return CLASS_NON_IP;
}

static __always_inline void count(__u32 direction, __u32 class, __u64 bytes)
{
	__u32 key = slot;
	struct ebpfnet_counters *c = bpf_map_lookup_elem(&counters, &key);
	if (!c)
		return;
	if (class >= CLASS_COUNT)
		class = CLASS_NON_IP;

	struct ebpfnet_count *n = (struct ebpfnet_count *)c;
	n += direction * CLASS_COUNT + class;
	n->packets += 1;
	n->bytes += bytes;
}

static __always_inline int count_skb(struct __sk_buff *skb, __u32 direction)
{
	struct packet p = {
		.ctx = skb,
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
		.len = skb->len,
		.skb = true,
	};
	// On receive the kernel has already moved the outer VLAN tag out of the
	// frame into skb metadata, after counting the frame with it.
	__u64 bytes = skb->len + (skb->vlan_present ? VLAN_HLEN : 0);

	count(direction, classify(&p), bytes);
	return TCX_NEXT;
}

SEC("tc")
int ebpfnet_ingress(struct __sk_buff *skb)
{
	return count_skb(skb, DIRECTION_RECEIVE);
}

SEC("tc")
int ebpfnet_egress(struct __sk_buff *skb)
{
	return count_skb(skb, DIRECTION_TRANSMIT);
}

SEC("xdp")
int ebpfnet_xdp(struct xdp_md *ctx)
{
	struct packet p = {
		.ctx = ctx,
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
		.skb = false,
	};
	p.len = p.data_end - p.data;

	count(DIRECTION_RECEIVE, classify(&p), p.len);
	return XDP_PASS;
}

// An empty program of each type, for the benchmarks' floor.
SEC("tc")
int ebpfnet_empty_tc(struct __sk_buff *skb)
{
	return TCX_NEXT;
}
