package testenv

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// Attachments lists the programs on the interface's tcx, tc and XDP hooks,
// as "hook:program-name", read back from the kernel.
func Attachments(t testing.TB, index int) []string {
	t.Helper()
	var out []string
	name := func(id ebpf.ProgramID) string {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return fmt.Sprintf("id-%d", id)
		}
		defer p.Close()
		info, err := p.Info()
		if err != nil {
			return fmt.Sprintf("id-%d", id)
		}
		return info.Name
	}
	for hook, at := range map[string]ebpf.AttachType{"tcx-ingress": ebpf.AttachTCXIngress, "tcx-egress": ebpf.AttachTCXEgress} {
		if !HasTCX() {
			break
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: index, Attach: at})
		if err != nil {
			t.Fatalf("query %s on %d: %v", hook, index, err)
		}
		for _, p := range res.Programs {
			out = append(out, hook+":"+name(p.ID))
		}
	}
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		t.Fatalf("link %d: %v", index, err)
	}
	for hook, parent := range map[string]uint32{"tc-ingress": netlink.HANDLE_MIN_INGRESS, "tc-egress": netlink.HANDLE_MIN_EGRESS} {
		filters, err := netlink.FilterList(l, parent)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok {
				out = append(out, hook+":"+bf.Name)
			}
		}
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		out = append(out, "xdp:"+name(ebpf.ProgramID(x.ProgId)))
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
