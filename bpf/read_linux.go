package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
)

// counterReader is ReadCounters' buffers, reused between reads.
type counterReader struct {
	mu     sync.Mutex
	perCPU []Counters
	keys   []uint32
}

// ReadCounters fills dst with rows 0 to len(dst)-1 of the counters map,
// each summed over all CPUs, in one BPF_MAP_LOOKUP_BATCH call. The kernel
// writes every CPU's values straight into a reused buffer (a Counters is a
// multiple of 8 bytes, the per-CPU stride, so cilium/ebpf hands the
// buffer over without copying), so steady-state reads allocate next to
// nothing.
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
	r := &o.read
	r.mu.Lock()
	defer r.mu.Unlock()
	if need := len(dst) * ncpu; cap(r.perCPU) < need {
		r.perCPU = make([]Counters, need)
		r.keys = make([]uint32, len(dst))
	}
	values := r.perCPU[:len(dst)*ncpu]
	keys := r.keys[:len(dst)]

	var cursor ebpf.MapBatchCursor
	n, err := o.counters.BatchLookup(&cursor, keys, values, nil)
	// ErrKeyNotExist: the batch reached the map's end, with every row asked for.
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read counters: %w", err)
	}
	if n != len(dst) {
		return fmt.Errorf("read counters: got %d rows of %d", n, len(dst))
	}
	for i := range dst {
		dst[i] = Counters{}
		for _, c := range values[i*ncpu : (i+1)*ncpu] {
			dst[i].Add(&c)
		}
	}
	return nil
}
