package bpf

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ReadCounters fills dst with rows 0 to len(dst)-1 of the counters map,
// each summed over all CPUs, in one BPF_MAP_LOOKUP_BATCH call. It reuses
// its buffer, so steady-state reads allocate nothing.
func (o *Objects) ReadCounters(dst []Counters) error {
	if len(dst) == 0 {
		return nil
	}
	if len(dst) > int(o.counters.MaxEntries()) {
		return fmt.Errorf("read %d counter rows: map has %d", len(dst), o.counters.MaxEntries())
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}

	o.readMu.Lock()
	defer o.readMu.Unlock()
	if need := len(dst) * ncpu; cap(o.perCPU) < need {
		o.perCPU = make([]Counters, need)
		o.keys = make([]uint32, len(dst))
	}
	values := o.perCPU[:len(dst)*ncpu]
	keys := o.keys[:len(dst)]

	// cilium/ebpf's BatchLookup unmarshals per-CPU values through
	// reflection and a fresh buffer on every call; the raw command writes
	// straight into ours. A Counters is a multiple of 8 bytes, so the
	// kernel's per-CPU stride is exactly one Counters.
	attr := mapBatchAttr{
		outBatch: uint64(uintptr(unsafe.Pointer(&o.batchOut))),
		keys:     uint64(uintptr(unsafe.Pointer(&keys[0]))),
		values:   uint64(uintptr(unsafe.Pointer(&values[0]))),
		count:    uint32(len(dst)),
		mapFD:    uint32(o.counters.FD()),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_BATCH,
		uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	// ENOENT: the batch reached the map's end, with every row we asked for.
	if errno != 0 && !errors.Is(errno, unix.ENOENT) {
		return fmt.Errorf("read counters: %w", errno)
	}
	if int(attr.count) != len(dst) {
		return fmt.Errorf("read counters: got %d rows of %d", attr.count, len(dst))
	}

	for i := range dst {
		dst[i] = Counters{}
		for _, c := range values[i*ncpu : (i+1)*ncpu] {
			dst[i].Add(&c)
		}
	}
	return nil
}

// mapBatchAttr is the batch part of union bpf_attr.
type mapBatchAttr struct {
	inBatch   uint64
	outBatch  uint64
	keys      uint64
	values    uint64
	count     uint32
	mapFD     uint32
	elemFlags uint64
	flags     uint64
}
