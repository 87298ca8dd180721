//go:build linux

package attach

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
)

// Options say how to attach.
type Options struct {
	Mode       string   // config.Attach*
	Directions []string // config.Direction*
	Logger     *slog.Logger
}

// NetDev is a network device as netlink describes it.
type NetDev struct {
	Index   int
	Name    string
	Framing bpf.Framing // how its frames start
}

// Interface is one attached interface.
type Interface struct {
	Row     uint32 // its row in the counters map
	Index   int
	Name    string
	Framing bpf.Framing
	Start   time.Time // when counting began
	Hooks   [bpf.NumDirections]bpf.Hook
	// Counting says every direction asked for has its hook. An interface
	// whose hook someone removed and that could not be put back keeps its
	// row (and its totals) but is not counting.
	Counting bool
}

// maps is what the Manager needs of the loaded programs and maps: a
// *bpf.Objects, or a fake in the tests.
type maps interface {
	MaxInterfaces() int
	Pinned() bool
	PinPath() string
	CountersID() uint32
	Program(name string) *ebpf.Program
	ProgramID(name string) uint32
	SetSlot(ifindex int, row uint32, f bpf.Framing) error
	Slot(ifindex int) (uint32, bpf.Framing, error)
	ClearSlots(keep func(ifindex int, row uint32) bool) error
	ResetCounters(row uint32) error
	ReadInterfaces() ([]bpf.InterfaceRow, error)
	WriteInterface(row uint32, r *bpf.InterfaceRow) error
	ReadMeta() (bpf.Meta, error)
	WriteMeta(bpf.Meta) error
}

// Manager attaches, keeps attached and detaches. Its methods are safe for
// concurrent use.
type Manager struct {
	objs     maps
	mode     string
	hook     bpf.Hook // the mode, resolved
	dirs     []bpf.Direction
	mechs    map[bpf.Hook]mechanism
	log      *slog.Logger
	linkName func(index int) (string, error) // netlink's, or a fake
	netns    func() (cookie, inode uint64, err error)
	freed    chan struct{} // a row was freed: see Freed

	mu      sync.Mutex
	rows    rows
	byIndex map[int]*attached
	reports *reports
	closed  bool

	healer *healer
}

// New returns a Manager writing objs' maps. With pinned maps it first
// takes over the interfaces an earlier process left attached there. It
// then watches the hooks it holds, and puts back any that someone else
// removes.
func New(objs *bpf.Objects, opts Options) (*Manager, error) {
	m := newManager(objs, opts, map[bpf.Hook]mechanism{
		bpf.HookTCX: tcx{},
		bpf.HookTC:  newTC(objs.CountersID(), objs.Pinned()),
		bpf.HookXDP: xdp{},
	}, kernelHasTCX)
	if m.hook == bpf.HookTCX {
		for _, d := range m.dirs {
			primeTCX(objs.Program(programFor(bpf.HookTCX, d)))
		}
	}
	if err := m.start(); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.startHealer(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func newManager(objs maps, opts Options, mechs map[bpf.Hook]mechanism, hasTCX func() bool) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		objs:     objs,
		mode:     opts.Mode,
		hook:     hookFor(opts.Mode, hasTCX),
		dirs:     directions(opts.Directions),
		mechs:    mechs,
		log:      log,
		linkName: netlinkName,
		netns:    bpf.Netns,
		freed:    make(chan struct{}, 1),
		rows:     newRows(objs.MaxInterfaces()),
		byIndex:  map[int]*attached{},
		reports:  newReports(log),
	}
}

func netlinkName(index int) (string, error) {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return "", err
	}
	return l.Attrs().Name, nil
}

// start takes over pinned state, if there is any to take over.
func (m *Manager) start() error {
	if !m.objs.Pinned() {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.adopt()
}

// Attach starts counting on the interface, if it is not counted already.
// Calling it again for an attached interface checks its hooks (netlink
// repeats an interface's events for every change); with a new name it
// records the rename and keeps the counts. Errors are reported (counted
// and logged) once per interface and cause, and returned.
func (m *Manager) Attach(dev NetDev) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("attach: manager closed")
	}
	err := m.attach(dev)
	switch {
	case errors.Is(err, ErrFull):
		m.reports.refuse(dev.Index, dev.Name)
	case err != nil:
		m.reports.fail(dev.Index, dev.Name, err)
	default:
		m.reports.ok(dev.Index)
	}
	return err
}

func (m *Manager) attach(dev NetDev) error {
	a := m.byIndex[dev.Index]
	var before Interface // zero for a new interface: its row is written
	if a != nil {
		before = a.Interface
	} else {
		a = &attached{Interface: Interface{Index: dev.Index, Name: dev.Name, Start: time.Now()}}
		row := m.rows.take(a)
		if row < 0 {
			return fmt.Errorf("attach %s: %w (%d)", dev.Name, ErrFull, m.rows.n())
		}
		a.Row = uint32(row)
		if err := m.objs.ResetCounters(a.Row); err != nil {
			m.rows.free(a.Row)
			return err
		}
		m.byIndex[dev.Index] = a
	}
	a.Name = dev.Name
	if a.Framing != dev.Framing {
		// The slot comes before any hook: a hook on an interface without
		// one counts nothing.
		if err := m.objs.SetSlot(dev.Index, a.Row, dev.Framing); err != nil {
			return fmt.Errorf("attach %s: %w", dev.Name, errors.Join(err, m.release(a)))
		}
		a.Framing = dev.Framing
	}

	var errs []error
	for _, d := range m.dirs {
		h := a.holds[d]
		switch {
		case h.hook == m.hook || m.mode == config.AttachAuto && h.hook == bpf.HookTC:
			// Attached before (a tc filter from an earlier process in auto
			// mode stays tc): still there?
			if err := m.ensure(a, d, "found missing on an interface event"); err != nil {
				errs = append(errs, err)
			}
			continue
		case h.hook != bpf.HookNone:
			// Pinned by a process with another attach mode.
			if err := m.detachHook(a, d); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := m.attachHook(a, d, m.hook); err != nil {
			errs = append(errs, err)
		}
	}
	// Directions no longer asked for, on interfaces picked up from pins.
	for d, h := range a.holds {
		if h.hook != bpf.HookNone && !m.counts(bpf.Direction(d)) {
			errs = append(errs, m.detachHook(a, bpf.Direction(d)))
		}
	}

	m.updateCounting(a)
	switch {
	case a.Hooks == [bpf.NumDirections]bpf.Hook{}:
		errs = append(errs, m.release(a))
	case a.Interface != before:
		errs = append(errs, m.writeRow(a))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("attach %s: %w", dev.Name, err)
	}
	return nil
}

// Detach stops counting on the interface and frees its row. Detaching an
// interface that is not attached is not an error: it forgets what was
// reported of it (a refusal ends with the interface).
func (m *Manager) Detach(index int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reports.ok(index)
	a := m.byIndex[index]
	if a == nil || m.closed {
		return nil
	}
	var errs []error
	for d := range a.holds {
		errs = append(errs, m.detachHook(a, bpf.Direction(d)))
	}
	errs = append(errs, m.release(a))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach %s: %w", a.Name, err)
	}
	return nil
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

// AppendAttached appends the attached interfaces to dst in row order.
func (m *Manager) AppendAttached(dst []Interface) []Interface {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appendAttached(dst)
}

func (m *Manager) appendAttached(dst []Interface) []Interface {
	m.rows.each(func(a *attached) { dst = append(dst, a.Interface) })
	return dst
}

// Freed is signalled (without blocking, so one signal may stand for
// several) when a row is freed, so that an interface refused for want of
// one can be attached: Refused says which.
func (m *Manager) Freed() <-chan struct{} { return m.freed }

// Refused lists the interfaces refused for want of a row, by ifindex.
func (m *Manager) Refused() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int
	for index := range m.reports.refused {
		out = append(out, index)
	}
	return out
}

// CopyErrors writes into dst how many attachments failed, by error type,
// every known type included, and returns how many hooks were restored.
func (m *Manager) CopyErrors(dst map[string]uint64) (restored uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range m.reports.counts {
		dst[k] = v
	}
	return m.reports.restores
}

// Mode is the attach mode in use: tcx, tc or xdp, auto resolved.
func (m *Manager) Mode() string { return m.hook.String() }
