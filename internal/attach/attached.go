//go:build linux

package attach

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// attached is one attached interface: its row and its hooks. The
// functions below drive one of them; the Manager holds the lock.
type attached struct {
	Interface
	holds [bpf.NumDirections]hold
}

func (m *Manager) counts(d bpf.Direction) bool {
	for _, c := range m.dirs {
		if c == d {
			return true
		}
	}
	return false
}

func (m *Manager) program(hook bpf.Hook, d bpf.Direction) (program, error) {
	name := programFor(hook, d)
	p := m.objs.Program(name)
	if p == nil {
		return program{}, fmt.Errorf("%s %s: program %s not loaded", d, hook, name)
	}
	return program{name: name, prog: p, id: m.objs.ProgramID(name)}, nil
}

// attachHook puts the program on a's hook in direction d. With pinned
// state, the row says what will be ebpfnet's there before it is attached.
func (m *Manager) attachHook(a *attached, d bpf.Direction, hook bpf.Hook) error {
	p, err := m.program(hook, d)
	if err != nil {
		return err
	}
	pin := ""
	if m.objs.Pinned() && m.mechs[hook].linked() {
		pin = m.linkPath(a.Index, d)
	}
	h, err := m.mechs[hook].attach(a.Index, d, p, pin, func(owned bpf.Owned) error {
		a.Hooks[d], a.holds[d] = hook, hold{hook: hook, owned: owned}
		if m.objs.Pinned() {
			return m.writeRow(a)
		}
		return nil
	})
	if err != nil {
		a.Hooks[d], a.holds[d] = bpf.HookNone, hold{}
		return fmt.Errorf("%s %s: %w", d, hook, fileLimit(err))
	}
	a.Hooks[d], a.holds[d] = hook, h
	m.log.Debug("attached", "interface", a.Name, "direction", d, "hook", hook)
	return nil
}

func (m *Manager) detachHook(a *attached, d bpf.Direction) error {
	var err error
	if h := a.holds[d]; h.hook != bpf.HookNone {
		err = m.mechs[h.hook].detach(h)
	}
	a.holds[d], a.Hooks[d] = hold{}, bpf.HookNone
	return err
}

// release frees a's row: its slot cleared, so that the programs stop
// counting the interface, then zeroed counters and a cleared interfaces
// row.
func (m *Manager) release(a *attached) error {
	m.rows.free(a.Row)
	delete(m.byIndex, a.Index)
	var err error
	if row, _, serr := m.objs.Slot(a.Index); serr != nil || row == a.Row {
		err = errors.Join(serr, m.objs.SetSlot(a.Index, 0, bpf.FramingUnused))
	}
	err = errors.Join(err,
		m.objs.ResetCounters(a.Row),
		m.objs.WriteInterface(a.Row, &bpf.InterfaceRow{}),
	)
	select {
	case m.freed <- struct{}{}:
	default:
	}
	return err
}

func (m *Manager) writeRow(a *attached) error {
	row := bpf.InterfaceRow{
		Ifindex:       uint32(a.Index),
		Hooks:         a.Hooks,
		Layout:        bpf.Layout,
		StartUnixNano: uint64(a.Start.UnixNano()),
	}
	for d, h := range a.holds {
		row.Owned[d] = h.owned
	}
	row.SetName(a.Name)
	return m.objs.WriteInterface(a.Row, &row)
}

// updateCounting says whether every direction asked for has its hook.
func (m *Manager) updateCounting(a *attached) {
	a.Counting = true
	for _, d := range m.dirs {
		if a.Hooks[d] == bpf.HookNone {
			a.Counting = false
		}
	}
}

func (m *Manager) linkPath(index int, d bpf.Direction) string {
	return filepath.Join(m.objs.PinPath(), "links", fmt.Sprintf("%d-%s", index, d))
}
