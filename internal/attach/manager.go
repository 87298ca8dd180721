// Package attach puts ebpfnet's programs on interfaces and takes them off
// again: tcx (kernel 6.6+), legacy tc (clsact qdisc and a direct-action
// filter) or XDP (receive only, native with a generic fallback). The
// programs are loaded once and shared by every interface, so attaching is
// a link or a filter and a slot telling the programs the interface's row.
// It owns the rows of the counters map: one per attached interface, zeroed
// before reuse, so the map never grows with interface churn.
//
// What ebpfnet puts on a hook is recognised by identity, never by name: a
// tcx or XDP link it holds (or pinned), a tc filter at the priority and
// handle it chose, running its program. Only those are ever replaced or
// removed; other programs on the same hooks are left alone.
//
// With a pin path, links are pinned beside the maps, each row records what
// is ebpfnet's on the interface's hooks, and a new Manager takes over what
// an earlier process left: it detaches what belongs to interfaces that were
// renamed, moved or deleted meanwhile, swaps its own programs into the
// rest in place (an upgrade), and counting never stops across restarts.
package attach

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
)

// ErrFull is returned by Attach when max_interfaces interfaces are attached.
var ErrFull = errors.New("max_interfaces reached")

// Values of the error.type attribute on ebpfnet.attach.errors.
const (
	ErrorMaxInterfaces = "max_interfaces"
	ErrorAttach        = "attach"
)

// Options say how to attach.
type Options struct {
	Mode       string   // config.Attach*
	Directions []string // config.Direction*
	PinPath    string
	Logger     *slog.Logger
}

// Link is an interface as netlink describes it.
type Link struct {
	Index int
	Name  string
	Type  bpf.Link // how its frames start
}

// Interface is one attached interface.
type Interface struct {
	Slot  uint32 // its row in the counters map
	Index int
	Name  string
	Type  bpf.Link
	Start time.Time // when counting began
	Hooks [bpf.NumDirections]bpf.Hook
}

type attached struct {
	Interface
	owned [bpf.NumDirections]bpf.Owned // what is ours on each hook
	links [bpf.NumDirections]link.Link // tcx and xdp; tc filters live in the qdisc
}

// Manager attaches and detaches. Its methods are safe for concurrent use.
type Manager struct {
	objs *bpf.Objects
	opts Options
	dirs []bpf.Direction
	log  *slog.Logger

	freed    chan struct{} // a row was freed: see Freed
	tcHandle uint32        // the tc filter handle this instance tries first

	mu      sync.Mutex
	slots   []*attached // by counters row; nil is free
	byIndex map[int]*attached
	errs    map[string]uint64
	noTCX   bool // auto mode found no tcx in this kernel
	closed  bool
}

// New returns a Manager writing objs' maps. With a pin path it first
// takes over the interfaces an earlier process left attached there.
func New(objs *bpf.Objects, opts Options) (*Manager, error) {
	m := &Manager{
		objs:     objs,
		opts:     opts,
		log:      opts.Logger,
		slots:    make([]*attached, objs.MaxInterfaces()),
		byIndex:  map[int]*attached{},
		errs:     map[string]uint64{},
		freed:    make(chan struct{}, 1),
		tcHandle: randomTCHandle(),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []bpf.Direction{bpf.Receive, bpf.Transmit} {
		for _, want := range opts.Directions {
			if want == d.String() {
				m.dirs = append(m.dirs, d)
			}
		}
	}
	if opts.Mode == config.AttachAuto {
		// Decide once, up front, so that the mode is known (and logged)
		// before the first interface: lo is in every namespace.
		_, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: ebpf.AttachTCXIngress})
		m.noTCX = errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL)
	}
	if opts.PinPath != "" {
		if err := os.MkdirAll(filepath.Join(opts.PinPath, "links"), 0o700); err != nil {
			return nil, fmt.Errorf("pin links: %w", err)
		}
		if err := m.adopt(); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// adopt takes over what a previous process left in the pinned state, before
// any row is given out: interfaces renamed, moved or deleted since are
// detached and their rows freed; the others keep their rows and totals,
// and this process's programs are swapped into their hooks in place.
// Slots and link pins that no row accounts for (a crash between two steps)
// are cleared.
func (m *Manager) adopt() error {
	rows, err := m.objs.ReadInterfaces()
	if err != nil {
		return err
	}
	var errs []error
	for slot, row := range rows {
		if row.Ifindex == 0 {
			continue
		}
		a := &attached{
			Interface: Interface{
				Slot:  uint32(slot),
				Index: int(row.Ifindex),
				Name:  row.InterfaceName(),
				Start: time.Unix(0, int64(row.StartUnixNano)),
				Hooks: row.Hooks,
			},
			owned: row.Owned,
		}
		if _, a.Type, err = m.objs.Slot(a.Index); err != nil {
			return err
		}
		m.slots[slot], m.byIndex[a.Index] = a, a
		// What of ours is still on the hooks.
		for d, hook := range a.Hooks {
			if !m.findHook(a, bpf.Direction(d), hook) {
				a.Hooks[d], a.owned[d] = bpf.HookNone, bpf.Owned{}
			}
		}
		l, err := netlink.LinkByIndex(a.Index)
		if err != nil || l.Attrs().Name != a.Name || a.Hooks == [bpf.NumDirections]bpf.Hook{} {
			// Renamed, moved or deleted while no process held the pins:
			// nothing of its may go on counting into a row that is about
			// to be given to another interface.
			m.log.Info("detaching pinned interface that changed while ebpfnet was stopped", "interface", a.Name, "ifindex", a.Index)
			for d := range a.Hooks {
				errs = append(errs, m.detachHook(a, bpf.Direction(d)))
			}
			errs = append(errs, m.release(a))
			continue
		}
		// An upgrade (or a restart of the same build): this process's
		// programs take over the hooks in place.
		for d, hook := range a.Hooks {
			if hook != bpf.HookNone {
				errs = append(errs, m.swapProgram(a, bpf.Direction(d)))
			}
		}
		errs = append(errs, m.writeRow(a))
		m.log.Debug("picked up pinned interface", "interface", a.Name, "since", a.Start)
	}
	errs = append(errs,
		m.objs.ClearSlots(func(ifindex int, row uint32) bool {
			a := m.byIndex[ifindex]
			return a != nil && a.Slot == row
		}),
		m.removeStrayLinkPins())
	return errors.Join(errs...)
}

// findHook reports whether what a's row says is ours on the hook is there,
// and holds on to it.
func (m *Manager) findHook(a *attached, d bpf.Direction, hook bpf.Hook) bool {
	switch hook {
	case bpf.HookTCX, bpf.HookXDP:
		pl, err := link.LoadPinnedLink(m.linkPath(a.Index, d), nil)
		if err != nil {
			return false
		}
		info, err := pl.Info()
		var ifindex uint32
		if err == nil && info.TCX() != nil {
			ifindex = info.TCX().Ifindex
		} else if err == nil && info.XDP() != nil {
			ifindex = info.XDP().Ifindex
		}
		if ifindex != uint32(a.Index) {
			// Its interface is gone (ifindex 0) or is not this one.
			_ = pl.Unpin()
			_ = pl.Close()
			return false
		}
		a.links[d] = pl
		return true
	case bpf.HookTC:
		f, err := ownedTC(a.Index, d, a.owned[d])
		return f != nil && err == nil
	}
	return false
}

// swapProgram puts this process's program on a's hook in place of what an
// earlier process attached: a link update for tcx and XDP, a filter
// replacement for tc. Either is atomic in the kernel.
func (m *Manager) swapProgram(a *attached, d bpf.Direction) error {
	name := programFor(a.Hooks[d], d)
	prog := m.objs.Program(name)
	if prog == nil {
		// This process does not count that direction.
		return m.detachHook(a, d)
	}
	owned := a.owned[d]
	owned.ProgramID = m.objs.ProgramID(name)
	var err error
	switch a.Hooks[d] {
	case bpf.HookTCX, bpf.HookXDP:
		err = a.links[d].Update(prog)
	case bpf.HookTC:
		err = replaceTC(a.Index, d, owned, prog, name)
	}
	if err != nil {
		return fmt.Errorf("%s: put this ebpfnet's program on the %s %s hook: %w", a.Name, d, a.Hooks[d], err)
	}
	a.owned[d] = owned
	return nil
}

// removeStrayLinkPins removes link pins that no row accounts for, which
// detaches their links.
func (m *Manager) removeStrayLinkPins() error {
	dir := filepath.Join(m.opts.PinPath, "links")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pinned links: %w", err)
	}
	keep := map[string]bool{}
	for _, a := range m.byIndex {
		for d, l := range a.links {
			if l != nil {
				keep[filepath.Base(m.linkPath(a.Index, bpf.Direction(d)))] = true
			}
		}
	}
	var errs []error
	for _, e := range entries {
		if !keep[e.Name()] {
			errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// Attach starts counting on the interface, if it is not counted already.
// Calling it again for an attached interface is cheap; with a new name it
// records the rename and keeps the counts.
func (m *Manager) Attach(l Link) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("attach: manager closed")
	}
	index, name := l.Index, l.Name

	a := m.byIndex[index]
	var before Interface // zero for a new interface: its row is written
	if a != nil {
		before = a.Interface
	} else {
		slot := m.freeSlot()
		if slot < 0 {
			m.errs[ErrorMaxInterfaces]++
			return fmt.Errorf("attach %s: %w (%d)", name, ErrFull, len(m.slots))
		}
		if err := m.objs.ResetCounters(uint32(slot)); err != nil {
			return err
		}
		a = &attached{Interface: Interface{Slot: uint32(slot), Index: index, Name: name, Start: time.Now()}}
		m.slots[slot], m.byIndex[index] = a, a
	}
	a.Name = name
	if a.Type != l.Type {
		// The slot comes before any hook: a hook on an interface without
		// one counts nothing.
		if err := m.objs.SetSlot(index, a.Slot, l.Type); err != nil {
			errs := errors.Join(err, m.release(a))
			return fmt.Errorf("attach %s: %w", name, errs)
		}
		a.Type = l.Type
	}

	var errs []error
	for _, d := range m.dirs {
		want := m.hookFor(d)
		if a.Hooks[d] == want || m.opts.Mode == config.AttachAuto && a.Hooks[d] == bpf.HookTC {
			continue
		}
		if a.Hooks[d] != bpf.HookNone {
			// Pinned by a process with another attach mode.
			if err := m.detachHook(a, d); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := m.attachHook(a, d); err != nil {
			errs = append(errs, err)
		}
	}
	// Directions no longer asked for, on interfaces picked up from pins.
	for d, hook := range a.Hooks {
		if hook != bpf.HookNone && !m.counts(bpf.Direction(d)) {
			errs = append(errs, m.detachHook(a, bpf.Direction(d)))
		}
	}

	switch {
	case a.Hooks == [bpf.NumDirections]bpf.Hook{}:
		errs = append(errs, m.release(a))
	case a.Interface != before:
		// Netlink repeats RTM_NEWLINK for every change of an interface;
		// only a new hook or name needs the row rewritten.
		errs = append(errs, m.writeRow(a))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("attach %s: %w", name, err)
	}
	return nil
}

// Detach stops counting on the interface and frees its row. Detaching an
// interface that is not attached is not an error.
func (m *Manager) Detach(index int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.byIndex[index]
	if a == nil || m.closed {
		return nil
	}
	var errs []error
	for d := range a.Hooks {
		errs = append(errs, m.detachHook(a, bpf.Direction(d)))
	}
	errs = append(errs, m.release(a))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach %s: %w", a.Name, err)
	}
	return nil
}

// AppendAttached appends the attached interfaces to dst in row order.
func (m *Manager) AppendAttached(dst []Interface) []Interface {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appendAttached(dst)
}

func (m *Manager) appendAttached(dst []Interface) []Interface {
	for _, a := range m.slots {
		if a != nil {
			dst = append(dst, a.Interface)
		}
	}
	return dst
}

// View appends the attached interfaces to dst in row order and calls read
// with them before any of their rows can be freed or given to another
// interface: what read reads from those rows belongs to those interfaces.
func (m *Manager) View(dst []Interface, read func([]Interface) error) ([]Interface, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dst = m.appendAttached(dst)
	return dst, read(dst)
}

// Freed is signalled (without blocking, so one signal may stand for
// several) when a row is freed, so that an interface refused for want of
// one can be attached.
func (m *Manager) Freed() <-chan struct{} { return m.freed }

// CopyErrors writes into dst how many attachments failed, by error type.
func (m *Manager) CopyErrors(dst map[string]uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range m.errs {
		dst[k] = v
	}
}

// Close detaches everything, unless it is pinned: then it only lets go,
// and the pinned links keep counting. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for _, a := range m.byIndex {
		for d := range a.Hooks {
			if m.objs.Pinned() {
				if l := a.links[d]; l != nil {
					errs = append(errs, l.Close())
				}
				continue
			}
			errs = append(errs, m.detachHook(a, bpf.Direction(d)))
		}
	}
	return errors.Join(errs...)
}

// Mode is the attach mode in use: tcx, tc or xdp, auto resolved.
func (m *Manager) Mode() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hookFor(bpf.Receive).String()
}

func (m *Manager) counts(d bpf.Direction) bool {
	for _, c := range m.dirs {
		if c == d {
			return true
		}
	}
	return false
}

func (m *Manager) hookFor(d bpf.Direction) bpf.Hook {
	switch m.opts.Mode {
	case config.AttachXDP:
		return bpf.HookXDP
	case config.AttachTC:
		return bpf.HookTC
	case config.AttachAuto:
		if m.noTCX {
			return bpf.HookTC
		}
	}
	return bpf.HookTCX
}

// Programs returns the programs the options need: one per hook, shared by
// every interface.
func Programs(mode string, directions []string) []string {
	if mode == config.AttachXDP {
		return []string{bpf.ProgramXDP}
	}
	var names []string
	for _, d := range directions {
		if d == config.DirectionReceive {
			names = append(names, bpf.ProgramIngress)
		} else {
			names = append(names, bpf.ProgramEgress)
		}
	}
	return names
}

// programFor names the program that serves hook in direction d.
func programFor(hook bpf.Hook, d bpf.Direction) string {
	switch {
	case hook == bpf.HookXDP:
		return bpf.ProgramXDP
	case d == bpf.Transmit:
		return bpf.ProgramEgress
	}
	return bpf.ProgramIngress
}

func (m *Manager) attachHook(a *attached, d bpf.Direction) error {
	hook := m.hookFor(d)
	name := programFor(hook, d)
	prog := m.objs.Program(name)
	if prog == nil {
		return fmt.Errorf("%s %s: program %s not loaded", d, hook, name)
	}
	owned := bpf.Owned{ProgramID: m.objs.ProgramID(name)}

	var (
		l   link.Link
		err error
	)
	switch hook {
	case bpf.HookTCX:
		l, err = attachTCX(a.Index, d, prog)
		if errors.Is(err, ebpf.ErrNotSupported) && m.opts.Mode == config.AttachAuto {
			m.log.Info("kernel has no tcx, attaching with tc instead")
			m.noTCX, hook = true, bpf.HookTC
			err = m.attachTC(a, d, owned, prog, name)
		}
	case bpf.HookTC:
		err = m.attachTC(a, d, owned, prog, name)
	case bpf.HookXDP:
		l, err = attachXDP(a.Index, prog)
	}
	if err != nil {
		m.errs[ErrorAttach]++
		return fmt.Errorf("%s %s: %w", d, hook, err)
	}
	if l != nil && m.objs.Pinned() {
		if err := l.Pin(m.linkPath(a.Index, d)); err != nil {
			l.Close()
			m.errs[ErrorAttach]++
			return fmt.Errorf("pin %s link: %w", d, err)
		}
	}
	if hook != bpf.HookTC {
		a.owned[d] = owned
	}
	a.links[d], a.Hooks[d] = l, hook
	m.log.Debug("attached", "interface", a.Name, "direction", d, "hook", hook)
	return nil
}

// attachTC adds our filter at a handle of our own. With pinned state, the
// row says which filter will be ours before it is added, so that a crash
// in between leaves nothing a later process cannot find.
func (m *Manager) attachTC(a *attached, d bpf.Direction, owned bpf.Owned, prog *ebpf.Program, name string) error {
	owned.TCPriority = tcPriority(d)
	owned.TCHandle = m.tcHandle
	for try := 0; ; try++ {
		a.owned[d], a.Hooks[d] = owned, bpf.HookTC
		var err error
		if m.objs.Pinned() {
			err = m.writeRow(a)
		}
		if err == nil {
			if err = attachTC(a.Index, d, owned, prog, name); err == nil {
				return nil
			}
		}
		a.owned[d], a.Hooks[d] = bpf.Owned{}, bpf.HookNone
		if !errors.Is(err, unix.EEXIST) || try == 16 {
			return err
		}
		// Another instance has that handle here: take another.
		owned.TCHandle = randomTCHandle()
	}
}

func (m *Manager) detachHook(a *attached, d bpf.Direction) error {
	var err error
	switch a.Hooks[d] {
	case bpf.HookTCX, bpf.HookXDP:
		if l := a.links[d]; l != nil {
			if m.objs.Pinned() {
				err = l.Unpin()
			}
			err = errors.Join(err, l.Close())
		}
	case bpf.HookTC:
		err = detachTC(a.Index, d, a.owned[d])
	}
	a.links[d], a.Hooks[d], a.owned[d] = nil, bpf.HookNone, bpf.Owned{}
	return err
}

// release frees a's row: its slot cleared, so that the programs stop
// counting the interface, then zeroed counters and a cleared interfaces
// row.
func (m *Manager) release(a *attached) error {
	m.slots[a.Slot] = nil
	delete(m.byIndex, a.Index)
	var err error
	if row, _, serr := m.objs.Slot(a.Index); serr != nil || row == a.Slot {
		err = errors.Join(serr, m.objs.SetSlot(a.Index, 0, bpf.LinkUnused))
	}
	err = errors.Join(err,
		m.objs.ResetCounters(a.Slot),
		m.objs.WriteInterface(a.Slot, &bpf.Interface{}),
	)
	select {
	case m.freed <- struct{}{}:
	default:
	}
	return err
}

func (m *Manager) writeRow(a *attached) error {
	row := bpf.Interface{
		Ifindex:       uint32(a.Index),
		Hooks:         a.Hooks,
		Layout:        bpf.Layout,
		StartUnixNano: uint64(a.Start.UnixNano()),
		Owned:         a.owned,
	}
	row.SetName(a.Name)
	return m.objs.WriteInterface(a.Slot, &row)
}

// freeSlot returns the lowest free row, keeping the used rows at the front
// so a snapshot reads few rows, or -1.
func (m *Manager) freeSlot() int {
	for i, a := range m.slots {
		if a == nil {
			return i
		}
	}
	return -1
}

func (m *Manager) linkPath(index int, d bpf.Direction) string {
	return filepath.Join(m.opts.PinPath, "links", fmt.Sprintf("%d-%s", index, d))
}
