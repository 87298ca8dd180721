//go:build linux

package attach

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// ErrForeignNetns says that pinned state belongs to another network
// namespace, whose hooks are still attached.
var ErrForeignNetns = errors.New("pinned state of another network namespace")

// adopt takes over what an earlier process left in the pinned state,
// before any row is given out. It belongs to one network namespace: an
// ifindex means another interface in another one (every container's eth0
// is 2), so state recorded in another namespace is refused while any of
// its hooks is attached, and started over with one line when none is.
// Then interfaces renamed, moved or deleted since are detached and their
// rows freed; the others keep their rows and totals, and this process's
// programs are swapped into their hooks in place (an upgrade). Slots,
// link pins and tc filters that no row accounts for are removed.
func (m *Manager) adopt() error {
	cookie, inode, err := m.netns()
	if err != nil {
		return err
	}
	meta, err := m.objs.ReadMeta()
	if err != nil {
		return err
	}
	rowsIn, err := m.objs.ReadInterfaces()
	if err != nil {
		return err
	}
	dir := m.objs.PinPath()
	switch {
	case meta.Layout != 0 && meta.NetnsCookie != cookie:
		if alive := m.liveHooks(rowsIn, false); len(alive) > 0 {
			return fmt.Errorf("%w: %s was made in network namespace %d (netns cookie %d), this is %d, and its hooks on %s are attached: give each network namespace a pin_path of its own",
				ErrForeignNetns, dir, meta.NetnsInode, meta.NetnsCookie, inode, strings.Join(alive, ", "))
		}
		m.log.Warn("pinned state was made in another network namespace, whose hooks are all gone: starting over",
			"pin_path", dir, "netns", meta.NetnsInode, "this_netns", inode)
		if err := m.forget(rowsIn); err != nil {
			return err
		}
		rowsIn = make([]bpf.InterfaceRow, len(rowsIn))
	case meta.Layout == 0:
		// Layout 3 recorded no namespace: its links must be attached
		// here, in this namespace, to be taken over.
		if foreign := m.liveHooks(rowsIn, true); len(foreign) > 0 {
			return fmt.Errorf("%w: %s holds links attached to interfaces of another network namespace (%s): give each network namespace a pin_path of its own",
				ErrForeignNetns, dir, strings.Join(foreign, ", "))
		}
	}

	var errs []error
	for row, r := range rowsIn {
		if r.Ifindex != 0 {
			errs = append(errs, m.adoptRow(uint32(row), r))
		}
	}
	errs = append(errs,
		m.objs.ClearSlots(func(ifindex int, row uint32) bool {
			a := m.byIndex[ifindex]
			return a != nil && a.Row == row
		}),
		m.removeStrayLinkPins(),
		m.objs.WriteMeta(bpf.Meta{Layout: bpf.Layout, NetnsCookie: cookie, NetnsInode: inode}),
	)
	return errors.Join(errs...)
}

// adoptRow takes over one row's interface, or detaches what is left of it
// and frees the row.
func (m *Manager) adoptRow(row uint32, r bpf.InterfaceRow) error {
	a := &attached{Interface: Interface{
		Row:   row,
		Index: int(r.Ifindex),
		Name:  r.InterfaceName(),
		Start: time.Unix(0, int64(r.StartUnixNano)),
	}}
	var err error
	if _, a.Framing, err = m.objs.Slot(a.Index); err != nil {
		return err
	}
	m.rows.used[row], m.byIndex[a.Index] = a, a
	// What of ebpfnet's is still on the hooks, in this namespace.
	for d, hook := range r.Hooks {
		if mech := m.mechs[hook]; mech != nil {
			if h, ok := mech.find(a.Index, bpf.Direction(d), r.Owned[d], m.linkPath(a.Index, bpf.Direction(d))); ok {
				a.holds[d], a.Hooks[d] = h, hook
			}
		}
	}
	var errs []error
	name, lerr := m.linkName(a.Index)
	if lerr != nil || name != a.Name || a.Hooks == [bpf.NumDirections]bpf.Hook{} {
		// Renamed, moved or deleted while no process held the pins:
		// nothing of it may go on counting into a row that is about to
		// be given to another interface.
		m.log.Info("detaching pinned interface that changed while ebpfnet was stopped", "interface", a.Name, "ifindex", a.Index)
		for d := range a.holds {
			errs = append(errs, m.detachHook(a, bpf.Direction(d)))
		}
		return errors.Join(append(errs, m.release(a))...)
	}
	// An upgrade (or a restart of the same build): this process's programs
	// take over the hooks in place. A direction no longer counted goes.
	for d, h := range a.holds {
		if h.hook == bpf.HookNone {
			continue
		}
		if !m.counts(bpf.Direction(d)) {
			errs = append(errs, m.detachHook(a, bpf.Direction(d)))
			continue
		}
		p, err := m.program(h.hook, bpf.Direction(d))
		if err == nil {
			a.holds[d], err = m.mechs[h.hook].update(h, p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: put this ebpfnet's program on the %s %s hook: %w", a.Name, bpf.Direction(d), h.hook, err))
		}
		if tc, ok := m.mechs[h.hook].(*tc); ok {
			errs = append(errs, tc.removeStrays(a.Index, bpf.Direction(d), a.holds[d].owned))
		}
	}
	m.updateCounting(a)
	m.log.Debug("picked up pinned interface", "interface", a.Name, "since", a.Start)
	return errors.Join(append(errs, m.writeRow(a))...)
}

// liveHooks names the hooks of rows whose pinned links are attached to an
// interface: with elsewhereOnly, only to one that is not in this network
// namespace. A tc row counts as attached (another namespace's filters
// cannot be seen from here) unless elsewhereOnly.
func (m *Manager) liveHooks(rows []bpf.InterfaceRow, elsewhereOnly bool) []string {
	var out []string
	for _, r := range rows {
		if r.Ifindex == 0 {
			continue
		}
		for d, hook := range r.Hooks {
			where := fmt.Sprintf("%s (ifindex %d) %s", r.InterfaceName(), r.Ifindex, bpf.Direction(d))
			mech, ok := m.mechs[hook]
			switch {
			case !ok: // nothing on this hook
			case !mech.linked():
				if !elsewhereOnly {
					out = append(out, where+" "+hook.String())
				}
			default:
				ifindex, here := m.pinnedLinkState(int(r.Ifindex), bpf.Direction(d), hook)
				if ifindex != 0 && (!elsewhereOnly || !here) {
					out = append(out, where+" "+hook.String())
				}
			}
		}
	}
	return out
}

// pinnedLinkState says which interface the pinned link of a row's hook is
// attached to (0: none, or no such pin), and whether that is this network
// namespace's interface of that index.
func (m *Manager) pinnedLinkState(index int, d bpf.Direction, hook bpf.Hook) (ifindex int, here bool) {
	pin := m.linkPath(index, d)
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return 0, false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, false
	}
	switch {
	case info.TCX() != nil:
		ifindex = int(info.TCX().Ifindex)
	case info.XDP() != nil:
		ifindex = int(info.XDP().Ifindex)
	}
	if ifindex == 0 {
		return 0, false
	}
	h, ok := m.mechs[hook].find(ifindex, d, bpf.Owned{}, pin)
	if ok {
		_ = h.closeLink()
	}
	return ifindex, ok
}

// forget clears pinned state whose hooks are all gone: rows, slots,
// counters and link pins.
func (m *Manager) forget(rows []bpf.InterfaceRow) error {
	var errs []error
	for row, r := range rows {
		if r.Ifindex == 0 {
			continue
		}
		errs = append(errs, m.objs.ResetCounters(uint32(row)), m.objs.WriteInterface(uint32(row), &bpf.InterfaceRow{}))
	}
	return errors.Join(append(errs, m.objs.ClearSlots(func(int, uint32) bool { return false }))...)
}

// removeStrayLinkPins removes link pins that no row accounts for, which
// detaches their links.
func (m *Manager) removeStrayLinkPins() error {
	dir := filepath.Join(m.objs.PinPath(), "links")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pinned links: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pinned links: %w", err)
	}
	var keep []string
	for _, a := range m.byIndex {
		for d, h := range a.holds {
			if h.link != nil {
				keep = append(keep, filepath.Base(m.linkPath(a.Index, bpf.Direction(d))))
			}
		}
	}
	var errs []error
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}
