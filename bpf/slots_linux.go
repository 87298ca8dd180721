package bpf

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
)

// slotSize is the size of struct ebpfnet_slot, which an array map lays out
// without padding between entries (a multiple of 8 already).
const slotSize = int(unsafe.Sizeof(ebpfnetEbpfnetSlot{}))

// SetSlot tells the programs to count frames on ifindex in row, parsing
// them as framing says. FramingUnused stops counting them.
func (o *Objects) SetSlot(ifindex int, row uint32, framing Framing) error {
	if ifindex <= 0 {
		return fmt.Errorf("set slot: bad ifindex %d", ifindex)
	}
	if ifindex < DirectIfindexes {
		// One 8-byte store: a program reads the row and the framing of
		// the same write, never half of each.
		p := (*uint64)(unsafe.Pointer(&o.slotMem[ifindex*slotSize]))
		atomic.StoreUint64(p, uint64(row)|uint64(framing)<<32)
		return nil
	}
	key := uint32(ifindex)
	if framing == FramingUnused {
		if err := o.slotsHash.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear slot of ifindex %d: %w", ifindex, err)
		}
		return nil
	}
	if err := o.slotsHash.Update(key, ebpfnetEbpfnetSlot{Row: row, Framing: uint32(framing)}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set slot of ifindex %d: %w", ifindex, err)
	}
	return nil
}

// Slot returns the row and framing the programs use for ifindex.
func (o *Objects) Slot(ifindex int) (row uint32, framing Framing, err error) {
	if ifindex <= 0 {
		return 0, FramingUnused, nil
	}
	if ifindex < DirectIfindexes {
		v := atomic.LoadUint64((*uint64)(unsafe.Pointer(&o.slotMem[ifindex*slotSize])))
		return uint32(v), Framing(v >> 32), nil
	}
	var s ebpfnetEbpfnetSlot
	err = o.slotsHash.Lookup(uint32(ifindex), &s)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, FramingUnused, nil
	}
	return s.Row, Framing(s.Framing), err
}

// ClearSlots clears every slot that keep does not want kept, given its
// ifindex and row: after a restart, slots that no interfaces row accounts
// for.
func (o *Objects) ClearSlots(keep func(ifindex int, row uint32) bool) error {
	var errs []error
	for ifindex := 1; ifindex < DirectIfindexes; ifindex++ {
		row, framing, _ := o.Slot(ifindex)
		if framing != FramingUnused && !keep(ifindex, row) {
			errs = append(errs, o.SetSlot(ifindex, 0, FramingUnused))
		}
	}
	var (
		key  uint32
		slot ebpfnetEbpfnetSlot
		drop []int
	)
	it := o.slotsHash.Iterate()
	for it.Next(&key, &slot) {
		if !keep(int(key), slot.Row) {
			drop = append(drop, int(key))
		}
	}
	errs = append(errs, it.Err())
	for _, ifindex := range drop {
		errs = append(errs, o.SetSlot(ifindex, 0, FramingUnused))
	}
	return errors.Join(errs...)
}

// ResetCounters zeroes row's counters on every CPU, before the row is
// given to another interface.
func (o *Objects) ResetCounters(row uint32) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	if err := o.counters.Update(row, make([]Counters, ncpu), ebpf.UpdateExist); err != nil {
		return fmt.Errorf("reset counters row %d: %w", row, err)
	}
	return nil
}

// ReadInterfaces returns every row of the interfaces map; unused rows have
// Ifindex 0.
func (o *Objects) ReadInterfaces() ([]InterfaceRow, error) {
	rows := make([]InterfaceRow, o.interfaces.MaxEntries())
	for i := range rows {
		if err := o.interfaces.Lookup(uint32(i), &rows[i]); err != nil {
			return nil, fmt.Errorf("read interfaces row %d: %w", i, err)
		}
	}
	return rows, nil
}

// WriteInterface stores r at row.
func (o *Objects) WriteInterface(row uint32, r *InterfaceRow) error {
	if err := o.interfaces.Update(row, r, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write interfaces row %d: %w", row, err)
	}
	return nil
}
