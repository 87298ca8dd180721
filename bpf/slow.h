// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The slow path: headers read with a helper, at variable offsets.
// Included by ebpfnet.c, after parse.h.
//
// For frames the direct parse could not finish: headers past the skb's
// linear data, and IPv6 chains of more than one extension header. Each
// header is read into the per-CPU scratch at a fixed place, so offsets are
// only ever scalars handed to a helper, never added to a pointer. Its
// values are 64 bits wide: the compiler spills some here, and a 4-byte
// spill into a stack slot that held a pointer on another path is refused
// without CAP_PERFMON (on 6.1 at least).

#pragma once

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
