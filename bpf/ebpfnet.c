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
// No header is read that starts past this offset; it also sizes the
// scratch copy of a frame whose headers are not in the linear data.
#define MAX_HEADER_OFFSET 510
#define SCRATCH_SIZE (MAX_HEADER_OFFSET + 2)

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

// A per-CPU buffer for the rare tc frame whose headers are not all in the
// skb's linear data: the headers are copied here and parsed again.
struct scratch {
	__u8 bytes[SCRATCH_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 1);
} scratch SEC(".maps");

// This program object's row in counters, set before loading.
volatile const __u32 slot = 0;

// Where the parser reads from. The functions below are always inlined with
// a constant source, so each program holds one parser per source and the
// verifier never has to consider both at one read.
enum source {
	FROM_PACKET, // direct packet access, data to data_end
	FROM_COPY,   // the scratch copy, data to data + len
};

struct packet {
	void *data;
	void *data_end;
	__u32 len;       // the frame's length from data on, linear or not
	bool nonlinear;  // a read stopped at data_end before the frame's end
};

// read copies n (at most 2) bytes at off into to. It fails for bytes past
// the frame's end, and, from the packet, for bytes past the linear data.
static __always_inline int read(struct packet *p, enum source src, __u32 off, void *to, __u32 n)
{
	if (off > MAX_HEADER_OFFSET || off + n > p->len)
		return -1;
	if (src == FROM_COPY) {
		__builtin_memcpy(to, p->data + off, n);
		return 0;
	}
	if (p->data + off + n > p->data_end) {
		p->nonlinear = true;
		return -1;
	}
	__builtin_memcpy(to, p->data + off, n);
	return 0;
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

static __always_inline __u32 ipv4_transport(struct packet *p, enum source src, __u32 off)
{
	__u8 vihl, proto;

	if (read(p, src, off, &vihl, 1) || read(p, src, off + 9, &proto, 1))
		return TRANSPORT_UNKNOWN;
	// The whole header, options included, must be there for the protocol
	// field to be trusted. Fragments are classified by that field too.
	if (vihl >> 4 != 4 || (vihl & 0xf) < 5 || off + (vihl & 0xf) * 4 > p->len)
		return TRANSPORT_UNKNOWN;
	return transport(proto, IPPROTO_ICMP);
}

static __always_inline __u32 ipv6_transport(struct packet *p, enum source src, __u32 off)
{
	__u8 vtc, nexthdr;
	__u8 ext[2];

	if (read(p, src, off, &vtc, 1) || read(p, src, off + 6, &nexthdr, 1))
		return TRANSPORT_UNKNOWN;
	if (vtc >> 4 != 6 || off + 40 > p->len)
		return TRANSPORT_UNKNOWN;
	off += 40;

	// Skip up to MAX_IPV6_EXT_HEADERS extension headers; a longer chain is
	// an IPv6 packet whose transport we chose not to look for: "other".
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		if (nexthdr != IPPROTO_HOPOPTS && nexthdr != IPPROTO_ROUTING && nexthdr != IPPROTO_DSTOPTS &&
		    nexthdr != IPPROTO_FRAGMENT && nexthdr != IPPROTO_AH)
			return transport(nexthdr, IPPROTO_ICMPV6);
		// Every extension header starts with next header and a length.
		if (read(p, src, off, ext, 2))
			return TRANSPORT_UNKNOWN;
		if (nexthdr == IPPROTO_FRAGMENT)
			off += 8;
		else if (nexthdr == IPPROTO_AH)
			off += (ext[1] + 2) * 4;
		else
			off += (ext[1] + 1) * 8;
		// The extension header just skipped must be whole.
		if (off > p->len)
			return TRANSPORT_UNKNOWN;
		nexthdr = ext[0];
	}
	return transport(nexthdr, IPPROTO_ICMPV6);
}

static __always_inline __u32 classify(struct packet *p, enum source src)
{
	__u16 proto;
	__u32 off = ETH_HLEN;

	if (read(p, src, ETH_HLEN - 2, &proto, 2))
		return CLASS_NON_IP;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (read(p, src, off + 2, &proto, 2))
			return CLASS_NON_IP;
		off += VLAN_HLEN;
	}

	if (proto == bpf_htons(ETH_P_IP))
		return CLASS_IPV4 + ipv4_transport(p, src, off);
	if (proto == bpf_htons(ETH_P_IPV6))
		return CLASS_IPV6 + ipv6_transport(p, src, off);
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
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
		.len = skb->len,
	};
	// On receive the kernel has already moved the outer VLAN tag out of the
	// frame into skb metadata, after counting the frame with it.
	__u64 bytes = skb->len + (skb->vlan_present ? VLAN_HLEN : 0);
	__u32 class = classify(&p, FROM_PACKET);

	if (p.nonlinear) {
		__u32 zero = 0;
		struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
		__u32 n = skb->len < SCRATCH_SIZE ? skb->len : SCRATCH_SIZE;
		if (s && n > 0 && bpf_skb_load_bytes(skb, 0, s->bytes, n) == 0) {
			struct packet q = {.data = s->bytes, .len = n};
			class = classify(&q, FROM_COPY);
		}
	}

	count(direction, class, bytes);
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
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	p.len = p.data_end - p.data;

	count(DIRECTION_RECEIVE, classify(&p, FROM_PACKET), p.len);
	return XDP_PASS;
}

// An empty program of each type, for the benchmarks' floor.
SEC("tc")
int ebpfnet_empty_tc(struct __sk_buff *skb)
{
	return TCX_NEXT;
}
