// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// What ebpfnet's programs share with user space: the verdicts, the enums
// and structs of the maps' layout (bpf/bpf.go mirrors them, and a test
// checks their sizes and offsets), and the maps. Included by ebpfnet.c.

#pragma once

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
