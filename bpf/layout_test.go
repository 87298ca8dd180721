package bpf

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// The Go mirrors of the C structs must keep their layout: every field at
// the offset and of the size bpf2go read from the object's BTF, not merely
// the same total size.
func TestLayout(t *testing.T) {
	for _, c := range []struct {
		name     string
		ours, c  any
		minAlign uintptr
	}{
		{"Counters / struct ebpfnet_counters", Counters{}, ebpfnetEbpfnetCounters{}, 8},
		{"InterfaceRow / struct ebpfnet_interface", InterfaceRow{}, ebpfnetEbpfnetInterface{}, 0},
		{"Meta / struct ebpfnet_meta", Meta{}, ebpfnetEbpfnetMeta{}, 0},
	} {
		a, b := leaves(reflect.TypeOf(c.ours), 0), leaves(reflect.TypeOf(c.c), 0)
		if !slices.Equal(a, b) {
			t.Errorf("%s: fields (offset:size) differ:\n ours %v\n C    %v", c.name, a, b)
		}
		if size := reflect.TypeOf(c.ours).Size(); c.minAlign != 0 && size%c.minAlign != 0 {
			t.Errorf("%s is %d bytes: ReadCounters' per-CPU stride needs a multiple of %d", c.name, size, c.minAlign)
		}
	}
	// The framing in a slot is what SetSlot's single store puts at byte 4.
	if f, ok := reflect.TypeOf(ebpfnetEbpfnetSlot{}).FieldByName("Framing"); !ok || f.Offset != 4 || slotSize != 8 {
		t.Errorf("struct ebpfnet_slot: framing at %d of %d bytes, want 4 of 8", f.Offset, slotSize)
	}
	// The layout field stays where every version looks for it.
	if f, _ := reflect.TypeOf(InterfaceRow{}).FieldByName("Layout"); f.Offset != layoutOffset {
		t.Errorf("InterfaceRow.Layout at %d, want %d", f.Offset, layoutOffset)
	}
}

// leaves lists a type's scalar fields, in memory order, as offset:size,
// looking through structs and arrays (padding fields included).
func leaves(t reflect.Type, base uintptr) []string {
	switch t.Kind() {
	case reflect.Struct:
		var out []string
		for i := range t.NumField() {
			out = append(out, leaves(t.Field(i).Type, base+t.Field(i).Offset)...)
		}
		return out
	case reflect.Array:
		var out []string
		for i := range t.Len() {
			out = append(out, leaves(t.Elem(), base+uintptr(i)*t.Elem().Size())...)
		}
		return out
	}
	return []string{fmt.Sprintf("%d:%d", base, t.Size())}
}
