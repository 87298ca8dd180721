//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// ebpfnet's datapath: count every frame on an interface by direction, IP
// version and transport, exactly as the kernel's interface statistics count
// it, and never change what happens to the frame.
//
// One program per hook serves every interface. It finds the interface's
// slot (its row in the counters map and its framing) by ifindex in an
// array, or in a hash for the rare ifindex past the array, so that
// attaching an interface is only a link or a filter: nothing is loaded or
// verified per interface.
//
// The programs are written to be accepted without CAP_PERFMON (CAP_BPF and
// CAP_NET_ADMIN alone), where the verifier applies its Spectre mitigations:
// - a pointer only ever moves by a constant: the verifier refuses a
//   variable offset on a packet pointer, and an instruction that moves a
//   map value pointer by a different amount on different paths. Every
//   header read directly is at a constant offset per branch; where an
//   offset is truly variable (an IPv6 extension header chain longer than
//   one header, headers past the linear data) a helper reads the header;
// - nothing on the per-packet path writes to the stack: the first write to
//   a stack slot gets a speculation barrier (lfence) after it. Map keys
//   therefore point into map values (.rodata's zero, the per-CPU scratch,
//   the slot's row), at constant offsets: 6.18 puts a barrier before a
//   lookup whose key pointer has a variable offset.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

// Pass-through verdicts. TCX_NEXT (6.6+) and TC_ACT_UNSPEC are both -1, so one
// tc program serves both the tcx and the legacy clsact hook, and the
// programs behind ours on the same hook (Cilium, Calico, ...) still run.
#define TCX_NEXT (-1)
#define TC_ACT_UNSPEC (-1)

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

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

// Bounds that keep the parser's loops finite: at most this many IPv6
// extension headers are walked, and none that starts past this offset.
#define MAX_IPV6_EXT_HEADERS 8
#define MAX_HEADER_OFFSET 510

// Interfaces with an ifindex below this have their slot in the direct
// table; the others in the slots_hash map.
#define DIRECT_IFINDEXES 16384

enum ebpfnet_direction {
	DIRECTION_RECEIVE = 0,
	DIRECTION_TRANSMIT = 1,
};

// What a frame on the interface starts with: its framing.
enum ebpfnet_framing {
	FRAMING_UNUSED = 0,   // no interface: not counted
	FRAMING_ETHERNET = 1, // an Ethernet header (veth, bridges, NICs, lo)
	FRAMING_IP = 2,       // an IP header (tun, WireGuard, ipip, sit, ...)
	FRAMING_OTHER = 3,    // anything else: counted, never classified
};

// Transport of an IP packet, as an offset within its IP version's classes.
enum ebpfnet_transport {
	TRANSPORT_UNKNOWN = 0, // header truncated or malformed: no transport attribute
	TRANSPORT_TCP = 1,
	TRANSPORT_UDP = 2,
	TRANSPORT_ICMP = 3,
	TRANSPORT_OTHER = 4,
	TRANSPORT_SLOW = 0xff, // not found by the direct parse: take the slow path
};

// The row a frame is counted in; the order matches struct ebpfnet_classes.
enum ebpfnet_class {
	CLASS_NON_IP = 0,
	CLASS_IPV4 = 1, // + enum ebpfnet_transport
	CLASS_IPV6 = 6, // + enum ebpfnet_transport
	CLASS_COUNT = 11,
	CLASS_SLOW = 0xff, // see TRANSPORT_SLOW
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
	// What is ebpfnet's on each hook (receive, transmit), so that a later
	// process touches that and nothing else: the program attached, and for
	// tc the filter's priority and handle. Written before the hook is
	// attached, so a crash in between leaves nothing unaccounted for.
	struct ebpfnet_owned {
		__u32 program_id;
		__u32 tc_priority;
		__u32 tc_handle;
		__u32 _pad;
	} owned[2];
};

// An interface's slot: the row its frames are counted in and how to read
// them. User space writes it as one 8-byte store, so a program never sees
// half.
struct ebpfnet_slot {
	__u32 row;     // in counters and interfaces
	__u32 framing; // enum ebpfnet_framing; FRAMING_UNUSED: not attached
};

// What pinned state is, written by the process that makes it and checked by
// every process that opens it: the layout of the maps, and the network
// namespace whose interfaces the rows and slots name (an ifindex means
// nothing in another one).
struct ebpfnet_meta {
	__u32 layout;
	__u32 _pad;
	__u64 netns_cookie; // SO_NETNS_COOKIE: unique for the life of the system
	__u64 netns_inode;  // the namespace's inode, for people reading bpftool
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

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ebpfnet_meta);
	__uint(max_entries, 1);
} meta SEC(".maps");

// Slots of interfaces whose ifindex is below DIRECT_IFINDEXES, indexed by
// ifindex. User space writes a slot through a memory mapping of the map.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ebpfnet_slot);
	__uint(max_entries, DIRECT_IFINDEXES);
	__uint(map_flags, BPF_F_MMAPABLE);
} slots SEC(".maps");

// Slots of interfaces whose ifindex is DIRECT_IFINDEXES or more. max_entries
// is max_interfaces, set by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct ebpfnet_slot);
	__uint(max_entries, 1);
} slots_hash SEC(".maps");

// Per-CPU room for the slow paths: the bytes of a header read with a
// helper, and the key of a slots_hash lookup (kept off the stack, see above).
struct scratch {
	__u8 header[16];
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 1);
} scratch SEC(".maps");

// The key of the scratch map, in .rodata so that it is a map value.
const volatile __u32 zero = 0;

// forget returns v, having made the verifier forget what it knew of it
// (v ^ x ^ x, with x unknown to it), so that paths that differ only in v
// reach what follows in one state, which the verifier then checks once
// instead of once per path, and, without CAP_PERFMON, once more for each
// speculative path of each: 6.1's verifier gives up otherwise. Used on
// the class a parse path ends in (which also makes the counter's address
// one pointer move with the same bounds on every path, as the verifier
// asks of a variable offset when it sanitizes) and on how far the IPv6
// extension header walk got.
static __always_inline __u64 forget(__u64 v, __u64 x)
{
	// 64 bits wide, so that the bounds check after it is a 64-bit
	// comparison: 6.1's verifier does not carry a 32-bit one over to the
	// pointer arithmetic.
	asm volatile("%[c] ^= %[x]\n\t"
		     "%[c] ^= %[x]\n\t"
		     : [c] "+r"(v)
		     : [x] "r"(x));
	return v;
}

static __always_inline struct scratch *scratch_space(void)
{
	return bpf_map_lookup_elem(&scratch, (void *)&zero);
}

#ifndef slot_of
// slot_of finds the interface's slot with a map lookup whose key is a copy
// of the ifindex in the per-CPU scratch: the slot pointer then has no
// variable offset. (Indexing a table by ifindex in the program instead made
// 6.18's verifier, without CAP_PERFMON, put a speculation barrier before
// the counters lookup keyed by the slot's row: its simulation of the
// sanitized pointer arithmetic trips over the key's bounds.)
//
// (make bench builds these programs again with a slot_of of its own:
// internal/bench/constslot.c.)
static __always_inline struct ebpfnet_slot *slot_of(__u32 ifindex)
{
	struct scratch *s = scratch_space();

	if (!s)
		return NULL;
	s->ifindex = ifindex;
	if (ifindex < DIRECT_IFINDEXES)
		return bpf_map_lookup_elem(&slots, &s->ifindex);
	struct ebpfnet_slot *slot = bpf_map_lookup_elem(&slots_hash, &s->ifindex);
	// Unlike its twin above, or the compiler merges the two lookups into
	// one call with the map chosen at run time, which the verifier cannot
	// inline: a whole helper call on every packet.
	asm volatile("" : "+r"(slot));
	return slot;
}
#endif

static __always_inline void count(struct ebpfnet_slot *slot, const __u32 direction, __u32 class, __u64 bytes)
{
	struct ebpfnet_counters *c = bpf_map_lookup_elem(&counters, &slot->row);

	if (!c)
		return;
	__u64 k = forget(class, slot->row); // a value the verifier never narrows
	// Never taken (every parse ends in a class), but it bounds the offset
	// for the verifier on the one path that goes on.
	if (k >= CLASS_COUNT)
		return;
	struct ebpfnet_count *n = direction == DIRECTION_RECEIVE ? &c->receive.non_ip : &c->transmit.non_ip;
	n += k;
	n->packets += 1;
	n->bytes += bytes;
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

// ---- The slow path: headers read with a helper, variable offsets. ----
//
// For frames the direct parse could not finish: headers past the skb's
// linear data, and IPv6 chains of more than one extension header. Each
// header is read into the per-CPU scratch at a fixed place, so offsets are
// only ever scalars handed to a helper, never added to a pointer. Its
// values are 64 bits wide: the compiler spills some here, and a 4-byte
// spill into a stack slot that held a pointer on another path is refused
// without CAP_PERFMON (on 6.1 at least).

enum ctx_kind {
	CTX_SKB,
	CTX_XDP,
};

// load reads n bytes at off into s->header, or returns NULL.
static __always_inline __u8 *load(void *ctx, const enum ctx_kind kind, struct scratch *s, __u64 off, const __u32 n)
{
	long err;

	if (kind == CTX_XDP)
		err = bpf_xdp_load_bytes(ctx, off, s->header, n);
	else
		err = bpf_skb_load_bytes(ctx, off, s->header, n);
	return err ? NULL : s->header;
}

static __always_inline __u32 slow_ipv4(void *ctx, const enum ctx_kind kind, struct scratch *s, __u64 len, __u64 off)
{
	if (off + 20 > len)
		return TRANSPORT_UNKNOWN;
	__u8 *h = load(ctx, kind, s, off, 10);
	if (!h)
		return TRANSPORT_UNKNOWN;
	__u64 ihl = h[0] & 0xf;
	if (h[0] >> 4 != 4 || ihl < 5 || off + ihl * 4 > len)
		return TRANSPORT_UNKNOWN;
	return transport(h[9], IPPROTO_ICMP);
}

static __always_inline __u32 slow_ipv6(void *ctx, const enum ctx_kind kind, struct scratch *s, __u64 len, __u64 off)
{
	if (off + 40 > len)
		return TRANSPORT_UNKNOWN;
	__u8 *h = load(ctx, kind, s, off, 7);
	if (!h || h[0] >> 4 != 6)
		return TRANSPORT_UNKNOWN;
	__u8 nexthdr = h[6];
	off += 40;

	// Skip up to MAX_IPV6_EXT_HEADERS extension headers; a longer chain is
	// an IPv6 packet whose transport we chose not to look for: "other".
	// Unrolled: a loop counter is one more branch the verifier knows the
	// outcome of, and so one more speculative path per header without
	// CAP_PERFMON.
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		// One state at the head of each header, whatever the path
		// through the ones before.
		__u64 next = forget(nexthdr, s->ifindex) & 0xff;
		off = forget(off, s->ifindex);
		if (!is_ipv6_ext(next))
			return transport(next, IPPROTO_ICMPV6);
		// Every extension header starts with next header and a length.
		if (off > MAX_HEADER_OFFSET || off + 2 > len)
			return TRANSPORT_UNKNOWN;
		h = load(ctx, kind, s, off, 2);
		if (!h)
			return TRANSPORT_UNKNOWN;
		off += ext_size(next, h[1]);
		nexthdr = h[0];
		// The extension header just skipped must be whole.
		if (off > len)
			return TRANSPORT_UNKNOWN;
	}
	return transport(nexthdr, IPPROTO_ICMPV6);
}

static __always_inline __u32 slow_classify(void *ctx, const enum ctx_kind kind, __u64 len, __u32 framing)
{
	struct scratch *s = scratch_space();
	__u8 *h;

	if (!s)
		return CLASS_NON_IP;
	if (framing == FRAMING_IP) {
		if (!(h = load(ctx, kind, s, 0, 1)))
			return CLASS_NON_IP;
		if (h[0] >> 4 == 4)
			return CLASS_IPV4 + slow_ipv4(ctx, kind, s, len, 0);
		if (h[0] >> 4 == 6)
			return CLASS_IPV6 + slow_ipv6(ctx, kind, s, len, 0);
		return CLASS_NON_IP;
	}
	if (framing != FRAMING_ETHERNET)
		return CLASS_NON_IP;
	__u64 off = 12;
	if (!(h = load(ctx, kind, s, off, 2)))
		return CLASS_NON_IP;
	__u16 proto = *(__u16 *)h;
#pragma unroll
	for (int i = 0; i < 2 && is_vlan(proto); i++) {
		off += 4;
		if (!(h = load(ctx, kind, s, off, 2)))
			return CLASS_NON_IP;
		proto = *(__u16 *)h;
	}
	off += 2;
	if (proto == bpf_htons(ETH_P_IP))
		return CLASS_IPV4 + slow_ipv4(ctx, kind, s, len, off);
	if (proto == bpf_htons(ETH_P_IPV6))
		return CLASS_IPV6 + slow_ipv6(ctx, kind, s, len, off);
	return CLASS_NON_IP;
}

// The slow paths are global functions: the verifier checks each once, on
// its own, rather than once for every state the fast path reaches it in
// (6.1's verifier, exploring speculative paths without CAP_PERFMON, runs
// out of room otherwise), and their helper calls do not make the fast path
// spill registers.
__noinline __u32 slow_classify_skb(struct __sk_buff *skb, __u32 framing)
{
	return slow_classify(skb, CTX_SKB, skb->len, framing);
}

__noinline __u32 slow_classify_xdp(struct xdp_md *ctx, __u32 len, __u32 framing)
{
	return slow_classify(ctx, CTX_XDP, len, framing);
}

static __always_inline int count_skb(struct __sk_buff *skb, const __u32 direction)
{
	struct ebpfnet_slot *slot = slot_of(skb->ifindex);

	if (!slot || slot->framing == FRAMING_UNUSED)
		return TCX_NEXT;
	__u32 framing = slot->framing;
	__u32 len = skb->len;
	__u32 class = classify(framing, (void *)(long)skb->data, (void *)(long)skb->data_end, len);
	if (class == CLASS_SLOW)
		class = slow_classify_skb(skb, framing);
	// On receive the kernel has already moved the outer VLAN tag out of the
	// frame into skb metadata, after counting the frame with it.
	count(slot, direction, class, len + (skb->vlan_present << 2)); // 4 bytes per tag in metadata
	return TCX_NEXT;
}

// Receive: attached at the head of the ingress hook.
SEC("tc")
int ebpfnet_ingress(struct __sk_buff *skb)
{
	return count_skb(skb, DIRECTION_RECEIVE);
}

// Transmit: attached at the tail of the egress hook.
SEC("tc")
int ebpfnet_egress(struct __sk_buff *skb)
{
	return count_skb(skb, DIRECTION_TRANSMIT);
}

SEC("xdp")
int ebpfnet_xdp(struct xdp_md *ctx)
{
	struct ebpfnet_slot *slot = slot_of(ctx->ingress_ifindex);

	if (!slot || slot->framing == FRAMING_UNUSED)
		return XDP_PASS;
	// The frame's whole length, fragments of a multi-buffer frame included,
	// as a scalar: the difference of two packet pointers is refused.
	__u32 len = bpf_xdp_get_buff_len(ctx);
	// The framing is read where it is used rather than kept: one value
	// fewer to hold across the parse, which would otherwise go to the stack
	// (and get a speculation barrier without CAP_PERFMON).
	__u32 class = classify(*(volatile __u32 *)&slot->framing, (void *)(long)ctx->data, (void *)(long)ctx->data_end, len);
	if (class == CLASS_SLOW)
		class = slow_classify_xdp(ctx, len, *(volatile __u32 *)&slot->framing);
	count(slot, DIRECTION_RECEIVE, class, len);
	return XDP_PASS;
}
