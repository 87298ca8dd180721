package attach

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
)

func TestRowsLowestFreeFirst(t *testing.T) {
	r := newRows(3)
	a, b, c, d := &attached{}, &attached{}, &attached{}, &attached{}
	if got := []int{r.take(a), r.take(b), r.take(c), r.take(d)}; !slices.Equal(got, []int{0, 1, 2, -1}) {
		t.Fatalf("rows taken %v, want 0 1 2 and then none", got)
	}
	r.free(1)
	if got := r.take(d); got != 1 {
		t.Errorf("after freeing row 1, took %d", got)
	}
	var order []*attached
	r.each(func(x *attached) { order = append(order, x) })
	if !slices.Equal(order, []*attached{a, d, c}) {
		t.Errorf("each went in another order than the rows'")
	}
}

// Attach gives rows lowest first, sets each slot before any hook, and a
// detached interface's row is zeroed and given to the next one.
func TestAttachDetachReuseRename(t *testing.T) {
	f := newFixture(t, 4, "tcx", true, "")
	for i := 1; i <= 3; i++ {
		if err := f.m.Attach(dev(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		if s := f.maps.slots[i]; s.row != uint32(i-1) || s.framing != bpf.FramingEthernet {
			t.Errorf("ifindex %d: slot %+v, want row %d", i, s, i-1)
		}
		if !f.mechs[bpf.HookTCX].on[[2]int{i, 0}] || !f.mechs[bpf.HookTCX].on[[2]int{i, 1}] {
			t.Errorf("ifindex %d not attached both ways", i)
		}
	}
	before := f.m.AppendAttached(nil)[1]
	if err := f.m.Detach(2); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.maps.slots[2]; ok || f.maps.rows[1] != (bpf.InterfaceRow{}) || len(f.mechs[bpf.HookTCX].on) != 4 {
		t.Errorf("detached: slot %v, row %+v, hooks %v", f.maps.slots[2], f.maps.rows[1], f.mechs[bpf.HookTCX].on)
	}
	select {
	case <-f.m.Freed():
	default:
		t.Error("no Freed signal")
	}
	if err := f.m.Attach(dev(7)); err != nil {
		t.Fatal(err)
	}
	if s := f.maps.slots[7]; s.row != 1 {
		t.Errorf("new interface got row %d, want the freed 1", s.row)
	}
	if n := strings.Count(fmt.Sprint(f.maps.resets), "1"); n != 3 {
		t.Errorf("row 1 zeroed %d times (%v), want on first use, on release and before reuse", n, f.maps.resets)
	}

	// A rename keeps the row and the start time.
	start := f.m.AppendAttached(nil)[0].Start
	renamed := dev(1)
	renamed.Name = "renamed"
	if err := f.m.Attach(renamed); err != nil {
		t.Fatal(err)
	}
	got := f.m.AppendAttached(nil)[0]
	if got.Name != "renamed" || got.Row != 0 || !got.Start.Equal(start) || f.maps.rows[0].InterfaceName() != "renamed" {
		t.Errorf("after a rename: %+v, row %q", got, f.maps.rows[0].InterfaceName())
	}
	if before.Row != 1 {
		t.Errorf("veth2 had row %d", before.Row)
	}
}

// A refusal for want of a row is counted and logged once, however often
// the interface's events retry it, until it is attached or deleted.
func TestRefusalCountedOncePerRefusal(t *testing.T) {
	f := newFixture(t, 1, "tcx", true, "")
	mustAttach(t, f.m, dev(1))
	for range 3 {
		if err := f.m.Attach(dev(2)); !errors.Is(err, ErrFull) {
			t.Fatalf("over max_interfaces: %v", err)
		}
	}
	if n := f.counts()[ErrorMaxInterfaces]; n != 1 {
		t.Errorf("%d refusals counted for one interface refused three times", n)
	}
	if n := f.log.count("max_interfaces reached"); n != 1 {
		t.Errorf("refusal logged %d times", n)
	}
	if got := f.m.Refused(); !slices.Equal(got, []int{2}) {
		t.Errorf("refused %v", got)
	}
	// A row frees: it is attached, and the refusal is over.
	mustDo(t, f.m.Detach(1))
	mustAttach(t, f.m, dev(2))
	if got := f.m.Refused(); len(got) != 0 {
		t.Errorf("still refused %v", got)
	}
	// Refused again later: a second refusal.
	mustAttach(t, f.m, dev(2))
	_ = f.m.Attach(dev(3))
	_ = f.m.Attach(dev(3))
	// A refused interface that is deleted ends its refusal too.
	mustDo(t, f.m.Detach(3))
	_ = f.m.Attach(dev(4))
	if n := f.counts()[ErrorMaxInterfaces]; n != 3 {
		t.Errorf("%d refusals counted, want 3 (veth2 once, veth3 once, veth4 once)", n)
	}
}

// Every known error type is there from the start, at 0.
func TestErrorTypesFromZero(t *testing.T) {
	f := newFixture(t, 1, "tcx", true, "")
	got := f.counts()
	for _, typ := range ErrorTypes {
		if v, ok := got[typ]; !ok || v != 0 {
			t.Errorf("%s: %d, %v; want 0 from the start", typ, v, ok)
		}
	}
}

// An attach error is counted once per interface and cause; running out
// of file descriptors is its own type, names the limit, and never makes
// auto mode change its mechanism.
func TestAttachErrorsAndTheFileLimit(t *testing.T) {
	f := newFixture(t, 4, "auto", true, "")
	f.mechs[bpf.HookTCX].fail[1] = fmt.Errorf("attach tcx: %w", unix.EMFILE)
	for range 3 {
		err := f.m.Attach(dev(1))
		if err == nil || !strings.Contains(err.Error(), "open-file limit") {
			t.Fatalf("attach with no file descriptor left: %v", err)
		}
	}
	f.mechs[bpf.HookTCX].fail[2] = fmt.Errorf("attach tcx: %w", ebpf.ErrNotSupported)
	_ = f.m.Attach(dev(2))
	_ = f.m.Attach(dev(2))
	mustAttach(t, f.m, dev(3))
	got := f.counts()
	if got[ErrorFileLimit] != 1 || got[ErrorAttach] != 1 {
		t.Errorf("counted %v, want one file_limit and one attach", got)
	}
	if n := f.mechs[bpf.HookTC].calls; n != 0 || f.m.Mode() != "tcx" {
		t.Errorf("auto mode attached %d hooks with tc and says %s: it must stay tcx", n, f.m.Mode())
	}
	if n := f.log.count("interface not counted"); n != 2 {
		t.Errorf("%d failure lines, want one per interface", n)
	}
	if len(f.m.AppendAttached(nil)) != 1 {
		t.Errorf("interfaces whose hooks all failed keep rows: %v", f.m.AppendAttached(nil))
	}
}

// A hook someone removed is put back: counted every time, logged once per
// interface and cause; while it cannot be put back the interface is not
// counting, and it is tried again.
func TestRestore(t *testing.T) {
	f := newFixture(t, 2, "tc", true, "")
	mustAttach(t, f.m, dev(1))
	tc := f.mechs[bpf.HookTC]
	for range 2 {
		delete(tc.on, [2]int{1, 0})
		delete(tc.on, [2]int{1, 1})
		f.m.Verify(1, "tc qdisc removed")
		if !tc.on[[2]int{1, 0}] || !tc.on[[2]int{1, 1}] {
			t.Fatal("not restored")
		}
	}
	if r := f.restored(); r != 4 {
		t.Errorf("%d restores counted, want 4 (two hooks, twice)", r)
	}
	if n := f.log.count("restored it"); n != 1 {
		t.Errorf("restores logged %d times, want once for one interface and cause", n)
	}
	// It cannot be put back: not counting, and reported.
	delete(tc.on, [2]int{1, 1})
	tc.fail[1] = errors.New("add tc filter: operation not permitted")
	f.m.Verify(1, "tc filter removed")
	if a := f.m.AppendAttached(nil)[0]; a.Counting || a.Hooks[bpf.Transmit] != bpf.HookNone {
		t.Errorf("with a hook missing: %+v", a)
	}
	if f.counts()[ErrorAttach] != 1 {
		t.Errorf("the failed restore was not counted: %v", f.counts())
	}
	// The next check puts it back.
	delete(tc.fail, 1)
	f.m.Verify(1, "tc filter removed")
	if a := f.m.AppendAttached(nil)[0]; !a.Counting {
		t.Errorf("not counting again: %+v", a)
	}
}

// The periodic check of tcx and XDP links finds a detached one.
func TestPollFindsDetachedLinks(t *testing.T) {
	f := newFixture(t, 2, "tcx", true, "")
	mustAttach(t, f.m, dev(1))
	mustAttach(t, f.m, dev(2))
	delete(f.mechs[bpf.HookTCX].on, [2]int{2, 0})
	f.m.pollLinks()
	if !f.mechs[bpf.HookTCX].on[[2]int{2, 0}] || f.restored() != 1 {
		t.Errorf("after a poll: hooks %v, restored %d", f.mechs[bpf.HookTCX].on, f.restored())
	}
}

// A panic in a goroutine that watches the hooks detaches what is not
// pinned and goes on.
func TestDetachOnPanic(t *testing.T) {
	f := newFixture(t, 2, "tc", true, "")
	mustAttach(t, f.m, dev(1))
	var r any
	func() {
		defer func() { r = recover() }()
		func() {
			defer f.m.DetachOnPanic()
			panic("boom")
		}()
	}()
	if r != "boom" || len(f.mechs[bpf.HookTC].on) != 0 {
		t.Errorf("recovered %v, hooks left %v: want the panic to go on and no hook left", r, f.mechs[bpf.HookTC].on)
	}
	if err := f.m.Attach(dev(2)); err == nil {
		t.Error("attached after abandoning")
	}
}

func (f *fixture) counts() map[string]uint64 {
	m := map[string]uint64{}
	f.m.CopyErrors(m)
	return m
}

func (f *fixture) restored() uint64 { return f.m.CopyErrors(map[string]uint64{}) }

func mustAttach(t *testing.T, m *Manager, d NetDev) {
	t.Helper()
	if err := m.Attach(d); err != nil {
		t.Fatal(err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
