package attach

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// fakeMaps stands in for the loaded maps: what the Manager writes, kept in
// memory.
type fakeMaps struct {
	n       int
	pinPath string
	slots   map[int]fakeSlot
	rows    []bpf.InterfaceRow
	resets  []uint32 // rows zeroed, in order
	meta    bpf.Meta
}

type fakeSlot struct {
	row     uint32
	framing bpf.Framing
}

func newFakeMaps(n int) *fakeMaps {
	return &fakeMaps{n: n, slots: map[int]fakeSlot{}, rows: make([]bpf.InterfaceRow, n)}
}

func (f *fakeMaps) MaxInterfaces() int                { return f.n }
func (f *fakeMaps) Pinned() bool                      { return f.pinPath != "" }
func (f *fakeMaps) PinPath() string                   { return f.pinPath }
func (f *fakeMaps) CountersID() uint32                { return 42 }
func (f *fakeMaps) Program(name string) *ebpf.Program { return &ebpf.Program{} }
func (f *fakeMaps) ProgramID(name string) uint32      { return uint32(len(name)) }
func (f *fakeMaps) SetSlot(ifindex int, row uint32, fr bpf.Framing) error {
	if fr == bpf.FramingUnused {
		delete(f.slots, ifindex)
		return nil
	}
	f.slots[ifindex] = fakeSlot{row, fr}
	return nil
}
func (f *fakeMaps) Slot(ifindex int) (uint32, bpf.Framing, error) {
	s := f.slots[ifindex]
	return s.row, s.framing, nil
}
func (f *fakeMaps) ClearSlots(keep func(int, uint32) bool) error {
	for ifindex, s := range f.slots {
		if !keep(ifindex, s.row) {
			delete(f.slots, ifindex)
		}
	}
	return nil
}
func (f *fakeMaps) ResetCounters(row uint32) error { f.resets = append(f.resets, row); return nil }
func (f *fakeMaps) ReadInterfaces() ([]bpf.InterfaceRow, error) {
	return append([]bpf.InterfaceRow(nil), f.rows...), nil
}
func (f *fakeMaps) WriteInterface(row uint32, r *bpf.InterfaceRow) error {
	f.rows[row] = *r
	return nil
}
func (f *fakeMaps) ReadMeta() (bpf.Meta, error) { return f.meta, nil }
func (f *fakeMaps) WriteMeta(m bpf.Meta) error  { f.meta = m; return nil }

// fakeMech stands in for a mechanism: hooks kept in memory, which a test
// can remove (as another tool would) or make fail.
type fakeMech struct {
	hook    bpf.Hook
	on      map[[2]int]bool // ifindex, direction
	fail    map[int]error   // attach errors by ifindex
	calls   int
	updates int
}

func newFakeMech(hook bpf.Hook) *fakeMech {
	return &fakeMech{hook: hook, on: map[[2]int]bool{}, fail: map[int]error{}}
}

func (f *fakeMech) attach(ifindex int, d bpf.Direction, p program, pin string, record func(bpf.Owned) error) (hold, error) {
	f.calls++
	owned := bpf.Owned{ProgramID: p.id}
	if err := record(owned); err != nil {
		return hold{}, err
	}
	if err := f.fail[ifindex]; err != nil {
		return hold{}, err
	}
	f.on[[2]int{ifindex, int(d)}] = true
	return hold{hook: f.hook, ifindex: ifindex, dir: d, owned: owned}, nil
}
func (f *fakeMech) update(h hold, p program) (hold, error) {
	f.updates++
	h.owned.ProgramID = p.id
	return h, nil
}
func (f *fakeMech) detach(h hold) error {
	delete(f.on, [2]int{h.ifindex, int(h.dir)})
	return nil
}
func (f *fakeMech) linked() bool { return f.hook != bpf.HookTC }

func (f *fakeMech) present(h hold) (bool, error) { return f.on[[2]int{h.ifindex, int(h.dir)}], nil }
func (f *fakeMech) find(ifindex int, d bpf.Direction, owned bpf.Owned, pin string) (hold, bool) {
	if !f.on[[2]int{ifindex, int(d)}] {
		return hold{}, false
	}
	return hold{hook: f.hook, ifindex: ifindex, dir: d, owned: owned}, true
}

// logLines collects log lines.
type logLines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), substr)
}

// fixture is a Manager over fakes.
type fixture struct {
	m     *Manager
	maps  *fakeMaps
	mechs map[bpf.Hook]*fakeMech
	log   *logLines
	names map[int]string // what netlink says each ifindex is called
}

func newFixture(t *testing.T, n int, mode string, hasTCX bool, pinPath string) *fixture {
	t.Helper()
	f := &fixture{maps: newFakeMaps(n), log: &logLines{}, names: map[int]string{},
		mechs: map[bpf.Hook]*fakeMech{bpf.HookTCX: newFakeMech(bpf.HookTCX), bpf.HookTC: newFakeMech(bpf.HookTC), bpf.HookXDP: newFakeMech(bpf.HookXDP)}}
	f.maps.pinPath = pinPath
	mechs := map[bpf.Hook]mechanism{}
	for h, m := range f.mechs {
		mechs[h] = m
	}
	dirs := []string{"receive", "transmit"}
	if mode == "xdp" {
		dirs = []string{"receive"}
	}
	f.m = newManager(f.maps, Options{Mode: mode, Directions: dirs, Logger: slog.New(slog.NewTextHandler(f.log, nil))}, mechs, func() bool { return hasTCX })
	f.m.linkName = func(index int) (string, error) {
		if name, ok := f.names[index]; ok {
			return name, nil
		}
		return "", errors.New("no such interface")
	}
	f.m.netns = func() (uint64, uint64, error) { return 1000, 4026531840, nil }
	return f
}

func dev(index int) NetDev {
	return NetDev{Index: index, Name: fmt.Sprintf("veth%d", index), Framing: bpf.FramingEthernet}
}
