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
	__u32 len; // the frame's length from data on, linear or not
};

// header returns a pointer to the n bytes at off, or NULL when the frame
// ends before them or, reading the packet, when they are past the linear
// data. One check covers every field of the header.
static __always_inline void *header(struct packet *p, enum source src, __u32 off, __u32 n)
{
	if (src == FROM_COPY) {
		if (off + n > SCRATCH_SIZE || off + n > p->len)
			return NULL;
		return p->data + off;
	}
	if (p->data + off + n > p->data_end)
		return NULL;
	return p->data + off;
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
	__u8 *h = header(p, src, off, 20);

	if (!h)
		return TRANSPORT_UNKNOWN;
	// The whole header, options included, must be there for the protocol
	// field to be trusted. Fragments are classified by that field too.
	if (h[0] >> 4 != 4 || (h[0] & 0xf) < 5 || off + (h[0] & 0xf) * 4 > p->len)
		return TRANSPORT_UNKNOWN;
	return transport(h[9], IPPROTO_ICMP);
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

static __always_inline __u32 ipv6_transport(struct packet *p, enum source src, __u32 off)
{
	__u8 *h = header(p, src, off, 40);

	if (!h || h[0] >> 4 != 6)
		return TRANSPORT_UNKNOWN;
	__u8 nexthdr = h[6];
	off += 40;

	// Skip up to MAX_IPV6_EXT_HEADERS extension headers; a longer chain is
	// an IPv6 packet whose transport we chose not to look for: "other".
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		// The common transports first: they end the walk.
		if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP || !is_ipv6_ext(nexthdr))
			return transport(nexthdr, IPPROTO_ICMPV6);
		// Every extension header starts with next header and a length.
		if (off > MAX_HEADER_OFFSET)
			return TRANSPORT_UNKNOWN;
		__u8 *ext = header(p, src, off, 2);
		if (!ext)
			return TRANSPORT_UNKNOWN;
		if (nexthdr == IPPROTO_FRAGMENT)
			off += 8;
		else if (nexthdr == IPPROTO_AH)
			off += (ext[1] + 2) * 4;
		else
			off += (ext[1] + 1) * 8;
		nexthdr = ext[0];
		// The extension header just skipped must be whole.
		if (off > p->len)
			return TRANSPORT_UNKNOWN;
	}
	return transport(nexthdr, IPPROTO_ICMPV6);
}

static __always_inline __u32 classify(struct packet *p, enum source src)
{
	__u16 *h = header(p, src, ETH_HLEN - 2, 2);
	__u32 off = ETH_HLEN;

	if (!h)
		return CLASS_NON_IP;
	__u16 proto = *h;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		h = header(p, src, off + 2, 2);
		if (!h)
			return CLASS_NON_IP;
		proto = *h;
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

// classify_copy parses a copy of the frame's first bytes: the slow path for
// the rare frame whose headers run past the skb's linear data. It is a
// function of its own so that its helper calls do not make the fast path
// spill registers.
static __noinline __u32 classify_copy(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	__u32 n = skb->len < SCRATCH_SIZE ? skb->len : SCRATCH_SIZE;

	if (!s || n == 0 || bpf_skb_load_bytes(skb, 0, s->bytes, n))
		return CLASS_NON_IP;
	struct packet q = {.data = s->bytes, .len = n};
	return classify(&q, FROM_COPY);
}

// Classes that may mean a header was not read: the only ones for which a
// frame running past the linear data is parsed again from a copy.
#define UNREAD_CLASSES \
	((1U << CLASS_NON_IP) | (1U << (CLASS_IPV4 + TRANSPORT_UNKNOWN)) | (1U << (CLASS_IPV6 + TRANSPORT_UNKNOWN)))

static __always_inline int count_skb(struct __sk_buff *skb, __u32 direction)
{
	struct packet p = {
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
		.len = skb->len,
	};
	__u32 class = classify(&p, FROM_PACKET);

	// A header the parser could not read may lie past the linear data: then,
	// and only then, parse a copy. Frames it could read cost nothing more.
	if (((1U << class) & UNREAD_CLASSES) && p.data + p.len > p.data_end)
		class = classify_copy(skb);
	// On receive the kernel has already moved the outer VLAN tag out of the
	// frame into skb metadata, after counting the frame with it.
	count(direction, class, skb->len + (skb->vlan_present << 2)); // VLAN_HLEN per tag in metadata
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
