package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Layout is the version of the maps' meaning, kept in every interfaces row.
// Bump it when a change keeps the maps' sizes but changes what they hold
// (the order of the classes, say), so that pinned state from an older
// ebpfnet is refused instead of mixed in.
const Layout = 1

// Program names in ebpfnet.c.
const (
	ProgramIngress = "ebpfnet_ingress"
	ProgramEgress  = "ebpfnet_egress"
	ProgramXDP     = "ebpfnet_xdp"
	// ProgramEmptyTC passes every packet without looking at it: the floor
	// the benchmarks measure the others against.
	ProgramEmptyTC = "ebpfnet_empty_tc"
)

// ErrIncompatiblePin says that pinned state exists but was made by an
// ebpfnet whose maps do not match this one.
var ErrIncompatiblePin = errors.New("pinned state does not match this ebpfnet")

// Objects are the maps shared by every attached interface, and the loader
// of the per-interface programs that write them.
type Objects struct {
	Counters   *ebpf.Map // PERCPU_ARRAY: slot -> Counters
	Interfaces *ebpf.Map // ARRAY: slot -> Interface

	mu      sync.Mutex // guards spec's slot variable during a load
	spec    *ebpf.CollectionSpec
	cache   *btf.Cache
	scratch *ebpf.Map // the slow path's per-CPU buffer, one for all programs

	readMu   sync.Mutex // guards the buffers ReadCounters reuses
	perCPU   []Counters
	keys     []uint32
	batchOut uint32
}

// Load creates the maps with room for maxInterfaces interfaces, or, when
// pinPath is set, opens the ones pinned there (creating and pinning them
// the first time). It mounts a BPF filesystem on pinPath if there is none.
func Load(maxInterfaces int, pinPath string) (*Objects, error) {
	spec, err := loadEbpfnet()
	if err != nil {
		return nil, err
	}
	var opts ebpf.MapOptions
	if pinPath != "" {
		if err := ensureBPFFS(pinPath); err != nil {
			return nil, err
		}
		opts.PinPath = pinPath
	}

	o := &Objects{spec: spec, cache: btf.NewCache()}
	for name, m := range map[string]**ebpf.Map{"counters": &o.Counters, "interfaces": &o.Interfaces} {
		ms := spec.Maps[name]
		ms.MaxEntries = uint32(maxInterfaces)
		if pinPath != "" {
			ms.Pinning = ebpf.PinByName
		}
		*m, err = ebpf.NewMapWithOptions(ms, opts)
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			o.Close()
			return nil, fmt.Errorf("%w: map %s in %s (was max_interfaces changed? remove %s to start over): %v",
				ErrIncompatiblePin, name, pinPath, pinPath, err)
		}
		if err != nil {
			o.Close()
			return nil, fmt.Errorf("create map %s: %w", name, err)
		}
	}
	if o.scratch, err = ebpf.NewMap(spec.Maps["scratch"]); err != nil {
		o.Close()
		return nil, fmt.Errorf("create map scratch: %w", err)
	}
	return o, nil
}

// LoadProgram loads the named program with its counters row set to slot.
// The caller owns the returned program.
func (o *Objects) LoadProgram(name string, slot uint32) (*ebpf.Program, error) {
	o.mu.Lock()
	defer o.mu.Unlock()

	if err := o.spec.Variables["slot"].Set(slot); err != nil {
		return nil, fmt.Errorf("set slot: %w", err)
	}
	ps, ok := o.spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("unknown program %q", name)
	}
	// A view of the spec with just this program, so that one interface's
	// load verifies one program. The shared maps are passed in; only the
	// .rodata holding slot is created for each program.
	one := *o.spec
	one.Programs = map[string]*ebpf.ProgramSpec{name: ps}
	coll, err := ebpf.NewCollectionWithOptions(&one, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{"counters": o.Counters, "interfaces": o.Interfaces, "scratch": o.scratch},
		Cache:           o.cache,
	})
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return nil, fmt.Errorf("load %s: %+v", name, ve)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	defer coll.Close()
	return coll.DetachProgram(name), nil
}

// ResetCounters zeroes slot's counters on every CPU, before the row is
// given to another interface.
func (o *Objects) ResetCounters(slot uint32) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	if err := o.Counters.Update(slot, make([]Counters, ncpu), ebpf.UpdateExist); err != nil {
		return fmt.Errorf("reset counters row %d: %w", slot, err)
	}
	return nil
}

// ReadInterfaces returns every row of the interfaces map; unused rows have
// Ifindex 0.
func (o *Objects) ReadInterfaces() ([]Interface, error) {
	rows := make([]Interface, o.Interfaces.MaxEntries())
	for i := range rows {
		if err := o.Interfaces.Lookup(uint32(i), &rows[i]); err != nil {
			return nil, fmt.Errorf("read interfaces row %d: %w", i, err)
		}
	}
	return rows, nil
}

// WriteInterface stores row at slot.
func (o *Objects) WriteInterface(slot uint32, row *Interface) error {
	if err := o.Interfaces.Update(slot, row, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write interfaces row %d: %w", slot, err)
	}
	return nil
}

// Close releases the maps. Pinned maps stay pinned.
func (o *Objects) Close() error {
	var errs []error
	for _, m := range []*ebpf.Map{o.Counters, o.Interfaces, o.scratch} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// ensureBPFFS makes path a directory on a BPF filesystem, mounting one on
// path itself when it is not on one already.
func ensureBPFFS(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("pin_path %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("pin_path %s: %w", path, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("pin_path %s is not on a BPF filesystem, and mounting one there failed: %w", path, err)
	}
	return nil
}
