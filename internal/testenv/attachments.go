//go:build linux

package testenv

import (
	"fmt"
	"sync"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Attachments lists the programs on the interface's tcx, tc and XDP hooks,
// as "hook:program-name", read back from the kernel.
func Attachments(t testing.TB, index int) []string {
	t.Helper()
	var out []string
	for _, a := range AttachedPrograms(t, index) {
		out = append(out, a.Hook+":"+a.Name)
	}
	return out
}

// Attached is one program on one of an interface's hooks.
type Attached struct {
	Hook   string // tcx-ingress, tcx-egress, tc-ingress, tc-egress or xdp
	ID     ebpf.ProgramID
	Name   string
	Tag    string
	Handle uint32 // tc only
}

// AttachedPrograms lists the programs on the interface's tcx, tc and XDP
// hooks, read back from the kernel.
func AttachedPrograms(t testing.TB, index int) []Attached {
	t.Helper()
	var out []Attached
	add := func(hook string, id ebpf.ProgramID, handle uint32) {
		a := Attached{Hook: hook, ID: id, Handle: handle, Name: fmt.Sprintf("id-%d", id)}
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			if info, err := p.Info(); err == nil {
				a.Name, a.Tag = info.Name, info.Tag
			}
			p.Close()
		}
		out = append(out, a)
	}
	for _, hook := range []struct {
		name string
		at   ebpf.AttachType
	}{{"tcx-ingress", ebpf.AttachTCXIngress}, {"tcx-egress", ebpf.AttachTCXEgress}} {
		if !HasTCX() {
			break
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: index, Attach: hook.at})
		if err != nil {
			t.Fatalf("query %s on %d: %v", hook.name, index, err)
		}
		for _, p := range res.Programs {
			add(hook.name, p.ID, 0)
		}
	}
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		t.Fatalf("link %d: %v", index, err)
	}
	for _, hook := range []struct {
		name   string
		parent uint32
	}{{"tc-ingress", netlink.HANDLE_MIN_INGRESS}, {"tc-egress", netlink.HANDLE_MIN_EGRESS}} {
		filters, err := netlink.FilterList(l, hook.parent)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok {
				add(hook.name, ebpf.ProgramID(bf.Id), bf.Handle)
			}
		}
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		add("xdp", ebpf.ProgramID(x.ProgId), 0)
	}
	return out
}

// HasTCX reports whether the kernel has the tcx hooks (6.6+).
func HasTCX() bool {
	tcxOnce.Do(func() {
		// Querying lo's tcx hook fails on a kernel without tcx.
		_, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: ebpf.AttachTCXIngress})
		hasTCX = err == nil
	})
	return hasTCX
}

var (
	tcxOnce sync.Once
	hasTCX  bool
)

// RequireMode skips t where the kernel lacks what the attach mode needs:
// tcx needs 6.6. That is a fact of the kernel, not a missing privilege, so
// it skips under EBPFNET_PRIVILEGED=require too.
func RequireMode(t testing.TB, mode string) {
	t.Helper()
	if mode == "tcx" && !HasTCX() {
		t.Skip("this kernel has no tcx (6.6+); the tc and xdp variants run instead")
	}
}

// DetachLinks does to the interface's tcx and XDP links what bpftool link
// detach does to them, whoever holds them, and says how many it detached.
func DetachLinks(t testing.TB, index int) int {
	t.Helper()
	n := 0
	for id := uint32(0); ; {
		// BPF_LINK_GET_NEXT_ID: union bpf_attr {start_id, next_id, open_flags}.
		attr := [3]uint32{id}
		if _, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_LINK_GET_NEXT_ID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr)); errno != 0 {
			return n
		}
		id = attr[1]
		l, err := link.NewFromID(link.ID(id))
		if err != nil {
			continue
		}
		info, err := l.Info()
		if err == nil && (info.TCX() != nil && int(info.TCX().Ifindex) == index || info.XDP() != nil && int(info.XDP().Ifindex) == index) {
			if err := l.Detach(); err != nil {
				t.Fatalf("detach link %d: %v", id, err)
			}
			n++
		}
		l.Close()
	}
}
