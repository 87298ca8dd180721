package attach

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// pinnedRow is a row as a process of this layout (or the previous one)
// leaves it.
func pinnedRow(index int, name string, layout uint32, hooks ...bpf.Hook) bpf.InterfaceRow {
	r := bpf.InterfaceRow{Ifindex: uint32(index), Layout: layout, StartUnixNano: uint64(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())}
	copy(r.Hooks[:], hooks)
	r.SetName(name)
	return r
}

// Pinned state of this namespace is taken over: rows, totals and start
// times kept, this process's programs put on the hooks in place, the
// namespace recorded.
func TestAdoptTakesOver(t *testing.T) {
	f := newFixture(t, 2, "tc", true, t.TempDir())
	f.maps.meta = bpf.Meta{Layout: bpf.Layout, NetnsCookie: 1000}
	f.maps.rows[1] = pinnedRow(5, "veth5", bpf.Layout, bpf.HookTC, bpf.HookTC)
	f.maps.slots[5] = fakeSlot{1, bpf.FramingEthernet}
	f.maps.slots[9] = fakeSlot{0, bpf.FramingEthernet} // no row accounts for it
	f.mechs[bpf.HookTC].on[[2]int{5, 0}], f.mechs[bpf.HookTC].on[[2]int{5, 1}] = true, true
	f.names[5] = "veth5"
	if err := f.m.start(); err != nil {
		t.Fatal(err)
	}
	a := f.m.AppendAttached(nil)
	if len(a) != 1 || a[0].Row != 1 || a[0].Name != "veth5" || !a[0].Counting || a[0].Start.Year() != 2026 {
		t.Fatalf("taken over: %+v", a)
	}
	if f.mechs[bpf.HookTC].updates != 2 {
		t.Errorf("%d hooks given this process's programs, want 2", f.mechs[bpf.HookTC].updates)
	}
	if _, ok := f.maps.slots[9]; ok {
		t.Error("a slot no row accounts for was kept")
	}
	if f.maps.meta != (bpf.Meta{Layout: bpf.Layout, NetnsCookie: 1000, NetnsInode: 4026531840}) {
		t.Errorf("meta %+v", f.maps.meta)
	}
}

// An interface renamed or gone while nothing held the pins is detached and
// its row freed before any row is given out.
func TestAdoptDetachesWhatChanged(t *testing.T) {
	f := newFixture(t, 2, "tc", true, t.TempDir())
	f.maps.meta = bpf.Meta{Layout: bpf.Layout, NetnsCookie: 1000}
	f.maps.rows[0] = pinnedRow(5, "veth5", bpf.Layout, bpf.HookTC, bpf.HookTC)
	f.maps.slots[5] = fakeSlot{0, bpf.FramingEthernet}
	f.mechs[bpf.HookTC].on[[2]int{5, 0}], f.mechs[bpf.HookTC].on[[2]int{5, 1}] = true, true
	f.names[5] = "other"
	if err := f.m.start(); err != nil {
		t.Fatal(err)
	}
	if len(f.m.AppendAttached(nil)) != 0 || len(f.mechs[bpf.HookTC].on) != 0 || f.maps.rows[0] != (bpf.InterfaceRow{}) {
		t.Errorf("renamed interface: attached %v, hooks %v, row %+v", f.m.AppendAttached(nil), f.mechs[bpf.HookTC].on, f.maps.rows[0])
	}
}

// State recorded in another network namespace is refused while its hooks
// may be attached there (tc filters of another namespace cannot be seen),
// naming both namespaces; with no hook left, it is started over.
func TestAdoptRefusesAnotherNamespace(t *testing.T) {
	f := newFixture(t, 2, "tc", true, t.TempDir())
	f.maps.meta = bpf.Meta{Layout: bpf.Layout, NetnsCookie: 77, NetnsInode: 4026532000}
	f.maps.rows[0] = pinnedRow(2, "veth0", bpf.Layout, bpf.HookTC, bpf.HookTC)
	f.names[2] = "veth0" // the same name and ifindex in both namespaces, as every container's first interface has; only the fakes see it
	f.mechs[bpf.HookTC].on[[2]int{2, 0}] = true
	err := f.m.start()
	if !errors.Is(err, ErrForeignNetns) || !strings.Contains(err.Error(), "network namespace 4026532000") ||
		!strings.Contains(err.Error(), "this is 4026531840") || !strings.Contains(err.Error(), "veth0 (ifindex 2) receive tc") {
		t.Fatalf("another namespace's state: %v", err)
	}
	if f.mechs[bpf.HookTC].updates != 0 || len(f.m.AppendAttached(nil)) != 0 {
		t.Error("something of the other namespace's state was taken over")
	}

	// Its hooks all gone (links detached with their interfaces): started
	// over, with one line.
	g := newFixture(t, 2, "tcx", true, t.TempDir())
	g.maps.meta = bpf.Meta{Layout: bpf.Layout, NetnsCookie: 77}
	g.maps.rows[0] = pinnedRow(2, "veth0", bpf.Layout, bpf.HookTCX, bpf.HookTCX)
	g.maps.slots[2] = fakeSlot{0, bpf.FramingEthernet}
	g.names[2] = "veth0"
	if err := g.m.start(); err != nil {
		t.Fatal(err)
	}
	if g.maps.rows[0] != (bpf.InterfaceRow{}) || len(g.maps.slots) != 0 || g.maps.meta.NetnsCookie != 1000 || g.log.count("starting over") != 1 {
		t.Errorf("not started over: row %+v, slots %v, meta %+v", g.maps.rows[0], g.maps.slots, g.maps.meta)
	}
}

// The previous layout recorded no namespace: its rows are taken over when
// their hooks are found here, and the state is rewritten in this layout.
func TestAdoptPreviousLayout(t *testing.T) {
	f := newFixture(t, 1, "tc", true, t.TempDir())
	f.maps.rows[0] = pinnedRow(3, "veth3", bpf.PreviousLayout, bpf.HookTC, bpf.HookTC)
	f.maps.slots[3] = fakeSlot{0, bpf.FramingEthernet}
	f.mechs[bpf.HookTC].on[[2]int{3, 0}], f.mechs[bpf.HookTC].on[[2]int{3, 1}] = true, true
	f.names[3] = "veth3"
	if err := f.m.start(); err != nil {
		t.Fatal(err)
	}
	if f.maps.rows[0].Layout != bpf.Layout || f.maps.meta.Layout != bpf.Layout || len(f.m.AppendAttached(nil)) != 1 {
		t.Errorf("row %+v, meta %+v", f.maps.rows[0], f.maps.meta)
	}
}
