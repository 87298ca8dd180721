//go:build linux

// Package attach puts ebpfnet's programs on interfaces, keeps them there,
// and takes them off again. The programs are loaded once and shared by
// every interface, so attaching is a hook and a slot telling the programs
// the interface's counter row.
//
// Its rooms, each with one job:
//   - rows.go: the counter rows, one per attached interface, lowest free
//     first, zeroed before reuse, so the maps never grow with churn;
//   - hook.go, tcx.go, tc.go, xdp.go: one type per mechanism (tcx, 6.6+;
//     legacy tc, a clsact qdisc and a direct-action filter; XDP, receive
//     only) behind one small interface: attach, update in place, detach,
//     and whether what is ebpfnet's is still on the hook;
//   - policy.go: which mechanism a mode means on this kernel, and which
//     programs it needs;
//   - pinned.go: taking over what an earlier process pinned, in this
//     network namespace only, and reconciling it with the kernel's view;
//   - reports.go: what failed, counted and logged once per interface and
//     cause;
//   - heal.go: noticing a hook that someone else removed, and restoring it;
//   - attached.go: one attached interface's hooks and row, driven through
//     its mechanism;
//   - manager.go: the Manager, which ties them together; close.go: how it
//     lets go (Close, and Abandon when the process is dying).
//
// What ebpfnet puts on a hook is recognised by identity, never by name
// alone: a tcx or XDP link it holds (or pinned), a tc filter at the
// priority and handle it chose, running its program, or named after the
// counters map it counts into. Only those are ever replaced or removed;
// other programs on the same hooks are left alone.
package attach
