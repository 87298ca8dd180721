// Package attach puts ebpfnet's programs on interfaces and takes them off
// again: tcx (kernel 6.6+), legacy tc (clsact qdisc and a direct-action
// filter) or XDP (receive only, native with a generic fallback). The
// programs are loaded once and shared by every interface, so attaching is
// a link or a filter and a slot telling the programs the interface's row.
// It owns the rows of the counters map: one per attached interface, zeroed
// before reuse, so the map never grows with interface churn.
//
// With a pin path, links are pinned beside the maps and a new Manager
// picks up what an earlier process left attached, so counting never stops
// across restarts.
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
	links [bpf.NumDirections]link.Link // tcx and xdp; tc filters live in the qdisc
}

// Manager attaches and detaches. Its methods are safe for concurrent use.
type Manager struct {
	objs *bpf.Objects
	opts Options
	dirs []bpf.Direction
	log  *slog.Logger

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
		objs:    objs,
		opts:    opts,
		log:     opts.Logger,
		slots:   make([]*attached, objs.MaxInterfaces()),
		byIndex: map[int]*attached{},
		errs:    map[string]uint64{},
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

// adopt takes over the rows a previous process left in pinned maps.
func (m *Manager) adopt() error {
	rows, err := m.objs.ReadInterfaces()
	if err != nil {
		return err
	}
	for slot, row := range rows {
		if row.Ifindex == 0 {
			continue
		}
		a := &attached{Interface: Interface{
			Slot:  uint32(slot),
			Index: int(row.Ifindex),
			Name:  row.InterfaceName(),
			Start: time.Unix(0, int64(row.StartUnixNano)),
		}}
		if _, a.Type, err = m.objs.Slot(a.Index); err != nil {
			return err
		}
		l, err := netlink.LinkByIndex(a.Index)
		if err != nil || l.Attrs().Name != a.Name {
			// The interface went away while no process held the pins.
			for d := range a.links {
				_ = os.Remove(m.linkPath(a.Index, bpf.Direction(d)))
			}
			if err := m.release(a); err != nil {
				return err
			}
			continue
		}
		for d, hook := range row.Hooks {
			dir := bpf.Direction(d)
			switch hook {
			case bpf.HookTCX, bpf.HookXDP:
				if pl, err := link.LoadPinnedLink(m.linkPath(a.Index, dir), nil); err == nil {
					a.links[d], a.Hooks[d] = pl, hook
				}
			case bpf.HookTC:
				if hasTC(a.Index, dir) {
					a.Hooks[d] = hook
				}
			}
		}
		m.slots[slot], m.byIndex[a.Index] = a, a
		m.log.Debug("picked up pinned interface", "interface", a.Name, "since", a.Start)
	}
	return nil
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
	for _, a := range m.slots {
		if a != nil {
			dst = append(dst, a.Interface)
		}
	}
	return dst
}

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
			if m.opts.PinPath != "" {
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

func (m *Manager) attachHook(a *attached, d bpf.Direction) error {
	hook := m.hookFor(d)
	name := bpf.ProgramIngress
	switch {
	case hook == bpf.HookXDP:
		name = bpf.ProgramXDP
	case d == bpf.Transmit:
		name = bpf.ProgramEgress
	}
	prog := m.objs.Program(name)
	if prog == nil {
		return fmt.Errorf("%s %s: program %s not loaded", d, hook, name)
	}

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
			err = attachTC(a.Index, d, prog, name)
		}
	case bpf.HookTC:
		err = attachTC(a.Index, d, prog, name)
	case bpf.HookXDP:
		l, err = attachXDP(a.Index, prog)
	}
	if err != nil {
		m.errs[ErrorAttach]++
		return fmt.Errorf("%s %s: %w", d, hook, err)
	}
	if l != nil && m.opts.PinPath != "" {
		if err := l.Pin(m.linkPath(a.Index, d)); err != nil {
			l.Close()
			m.errs[ErrorAttach]++
			return fmt.Errorf("pin %s link: %w", d, err)
		}
	}
	a.links[d], a.Hooks[d] = l, hook
	m.log.Debug("attached", "interface", a.Name, "direction", d, "hook", hook)
	return nil
}

func (m *Manager) detachHook(a *attached, d bpf.Direction) error {
	var err error
	switch a.Hooks[d] {
	case bpf.HookTCX, bpf.HookXDP:
		if l := a.links[d]; l != nil {
			if m.opts.PinPath != "" {
				err = l.Unpin()
			}
			err = errors.Join(err, l.Close())
		}
	case bpf.HookTC:
		err = detachTC(a.Index, d)
	}
	a.links[d], a.Hooks[d] = nil, bpf.HookNone
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
	return errors.Join(err,
		m.objs.ResetCounters(a.Slot),
		m.objs.WriteInterface(a.Slot, &bpf.Interface{}),
	)
}

func (m *Manager) writeRow(a *attached) error {
	row := bpf.Interface{
		Ifindex:       uint32(a.Index),
		Hooks:         a.Hooks,
		Layout:        bpf.Layout,
		StartUnixNano: uint64(a.Start.UnixNano()),
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
