//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// make bench's own programs, beside ebpfnet's (internal/bench/gen.go):
// - ebpfnet's programs as the previous design built them, with the
//   interface's slot a constant instead of a lookup (a copy of the programs
//   was loaded per interface), for the per-packet table;
// - an empty program, the floor every per-packet figure is measured above.

struct ebpfnet_slot;
static __attribute__((always_inline)) inline struct ebpfnet_slot *const_slot_of(unsigned int ifindex);
#define slot_of const_slot_of

#include "ebpfnet.c"

// The slot, read-only: the verifier knows its values, as it did when they
// were constants of a program loaded for one interface. The pointer is
// laundered so that the compiler reads the slot rather than folding its
// initial value.
const volatile struct ebpfnet_slot const_slot = {.row = 0, .framing = FRAMING_ETHERNET};

static __always_inline struct ebpfnet_slot *const_slot_of(__u32 ifindex)
{
	struct ebpfnet_slot *slot = (struct ebpfnet_slot *)&const_slot;

	asm volatile("" : "+r"(slot));
	return slot;
}

SEC("tc")
int ebpfnet_empty_tc(struct __sk_buff *skb)
{
	return TCX_NEXT;
}
