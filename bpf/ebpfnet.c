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

#include "ebpfnet.h"

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

#include "parse.h"
#include "slow.h"

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
