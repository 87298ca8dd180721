//go:build linux

package attach

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// The legacy tc filters ebpfnet installs. On ingress, priority 1 puts ours
// ahead of other filters, so it sees every frame the kernel has counted; on
// egress, the last priority puts it behind them, so it sees only frames
// that no other filter dropped. Each instance takes a handle of its own at
// that priority (cls_bpf runs every filter of a priority in turn, and ours
// return TC_ACT_UNSPEC, so each sees every frame): two instances on one
// interface both count, and each removes only its own filter. Handles are
// in tcHandleBase's range, so that `tc filter show` tells ours apart.
const (
	tcPriorityIngress = 1
	tcPriorityEgress  = 0xffff
	tcHandleBase      = 0xeb9f0000
)

// tc attaches with a direct-action filter on the interface's clsact qdisc
// (which it adds where there is none, and never removes: other programs
// may hang off it). A filter is named for its program and for the
// counters map it counts into (ebpfnet_ingress:42), so that a filter of
// ebpfnet's counting into these counters is recognised as such even where
// no row says so (a pin someone removed): it would count twice.
type tc struct {
	handle     uint32 // the handle this instance tries first
	countersID uint32
	// reconcile: the counters are pinned, so filters of an earlier
	// process may count into them.
	reconcile bool
}

func newTC(countersID uint32, reconcile bool) *tc {
	return &tc{handle: randomTCHandle(), countersID: countersID, reconcile: reconcile}
}

func tcPriority(d bpf.Direction) uint32 {
	if d == bpf.Receive {
		return tcPriorityIngress
	}
	return tcPriorityEgress
}

func tcParent(d bpf.Direction) uint32 {
	if d == bpf.Receive {
		return netlink.HANDLE_MIN_INGRESS
	}
	return netlink.HANDLE_MIN_EGRESS
}

// randomTCHandle returns a handle in ebpfnet's range.
func randomTCHandle() uint32 {
	return tcHandleBase | uint32(1+rand.IntN(0xfffe))
}

// filterName names a filter running program name and counting into the
// counters map of that ID.
func filterName(program string, countersID uint32) string {
	return program + ":" + strconv.FormatUint(uint64(countersID), 10)
}

func (c *tc) filter(ifindex int, d bpf.Direction, owned bpf.Owned, p program) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    tcParent(d),
			Handle:    owned.TCHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  uint16(owned.TCPriority),
		},
		Name:         filterName(p.name, c.countersID),
		DirectAction: true,
		Fd:           p.prog.FD(),
	}
}

// attach adds the clsact qdisc if there is none, removes filters of
// ebpfnet's that count into these counters without a row (with pinned
// counters), and adds ours at a handle of this instance's: EEXIST means
// another instance has it here, so another is tried.
func (c *tc) attach(ifindex int, d bpf.Direction, p program, _ string, record func(bpf.Owned) error) (hold, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return hold{}, fmt.Errorf("add clsact qdisc: %w", err)
	}
	owned := bpf.Owned{ProgramID: p.id, TCPriority: tcPriority(d), TCHandle: c.handle}
	if c.reconcile {
		if err := c.removeStrays(ifindex, d, owned); err != nil {
			return hold{}, err
		}
	}
	for try := 0; ; try++ {
		// The row says which filter will be ours before it is added, so
		// that a crash in between leaves nothing a later process cannot
		// find.
		err := record(owned)
		if err == nil {
			if err = netlink.FilterAdd(c.filter(ifindex, d, owned, p)); err == nil {
				return hold{hook: bpf.HookTC, ifindex: ifindex, dir: d, owned: owned}, nil
			}
			err = fmt.Errorf("add tc filter: %w", err)
		}
		if !errors.Is(err, unix.EEXIST) || try == 16 {
			return hold{}, err
		}
		c.handle = randomTCHandle()
		owned.TCHandle = c.handle
	}
}

// update replaces the filter's program in place: the kernel swaps it
// atomically, so no frame goes uncounted.
func (c *tc) update(h hold, p program) (hold, error) {
	owned := h.owned
	owned.ProgramID = p.id
	if err := netlink.FilterReplace(c.filter(h.ifindex, h.dir, owned, p)); err != nil {
		return h, fmt.Errorf("replace tc filter: %w", err)
	}
	h.owned = owned
	return h, nil
}

func (c *tc) detach(h hold) error {
	f, err := ownedFilter(h.ifindex, h.dir, h.owned)
	if f == nil || err != nil {
		return err
	}
	if err := netlink.FilterDel(f); err != nil && !gone(err) {
		return fmt.Errorf("remove tc filter: %w", err)
	}
	return nil
}

// present lists the hook's filters: a netlink dump, asked when the kernel
// says a filter or qdisc went (heal.go), not on a timer.
func (*tc) linked() bool { return false }

func (c *tc) present(h hold) (bool, error) {
	f, err := ownedFilter(h.ifindex, h.dir, h.owned)
	return f != nil, err
}

func (c *tc) find(ifindex int, d bpf.Direction, owned bpf.Owned, _ string) (hold, bool) {
	if f, err := ownedFilter(ifindex, d, owned); f == nil || err != nil {
		return hold{}, false
	}
	return hold{hook: bpf.HookTC, ifindex: ifindex, dir: d, owned: owned}, true
}

// ownedFilter returns ebpfnet's filter on the hook: the one at owned's
// priority and handle running owned's program. Anything else is someone
// else's.
func ownedFilter(ifindex int, d bpf.Direction, owned bpf.Owned) (*netlink.BpfFilter, error) {
	filters, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}, tcParent(d))
	if err != nil {
		if gone(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list tc filters: %w", err)
	}
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if ok && uint32(bf.Priority) == owned.TCPriority && bf.Handle == owned.TCHandle &&
			owned.ProgramID != 0 && uint32(bf.Id) == owned.ProgramID {
			return bf, nil
		}
	}
	return nil, nil
}

// removeStrays removes the filters on the hook, other than keep's, that
// are ebpfnet's and count into these counters: left by an earlier process
// whose row is lost, they would count every frame a second time.
func (c *tc) removeStrays(ifindex int, d bpf.Direction, keep bpf.Owned) error {
	filters, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}, tcParent(d))
	if err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("list tc filters: %w", err)
	}
	suffix := ":" + strconv.FormatUint(uint64(c.countersID), 10)
	var errs []error
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || bf.Handle&0xffff0000 != tcHandleBase || !strings.HasSuffix(bf.Name, suffix) ||
			bf.Handle == keep.TCHandle && uint32(bf.Priority) == keep.TCPriority {
			continue
		}
		if err := netlink.FilterDel(bf); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("remove stray tc filter %#x: %w", bf.Handle, err))
		}
	}
	return errors.Join(errs...)
}

// gone reports errors that mean the interface or the filter is no longer
// there: nothing left to detach.
func gone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}
