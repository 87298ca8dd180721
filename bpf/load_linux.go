package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Layout is the version of the maps' meaning, kept in every interfaces row
// and in the meta map. Bump it when a change keeps the maps' sizes but
// changes what they hold (the order of the classes, say), so that pinned
// state from an older ebpfnet is refused or taken over knowingly, never
// mixed in.
//
// 2: one program for every interface, which finds its row in the slots maps.
// 3: each row records what ebpfnet owns on the interface's hooks (struct
// ebpfnet_owned).
// 4: pinned state records the network namespace it belongs to (the meta
// map). A process of this layout takes over layout 3's pins once it has
// found their hooks in its own namespace (internal/attach).
//
// The layout field stays at byte 12 of a row in every layout, so that any
// version can tell which one pinned state was written under.
const Layout = 4

// layoutOffset is where a row of the interfaces map keeps its layout.
const layoutOffset = 12

// Program names in ebpfnet.c.
const (
	ProgramIngress = "ebpfnet_ingress"
	ProgramEgress  = "ebpfnet_egress"
	ProgramXDP     = "ebpfnet_xdp"
)

// DirectIfindexes is how many ifindexes have their slot in the slots array
// (DIRECT_IFINDEXES in ebpfnet.h); higher ones go through a hash.
const DirectIfindexes = 16384

// ErrIncompatiblePin says that pinned state exists but was made by an
// ebpfnet whose maps do not match this one.
var ErrIncompatiblePin = errors.New("pinned state does not match this ebpfnet")

// Options say what Load creates.
type Options struct {
	// MaxInterfaces is the number of counter rows.
	MaxInterfaces int
	// PinPath, if set, is where the maps are pinned, or found pinned.
	PinPath string
	// Programs are the programs to load, by name; each is loaded once
	// and serves every interface.
	Programs []string
	// EditSpec, if set, changes the programs and maps before they are
	// loaded: tests load variants of the programs with it.
	EditSpec func(*ebpf.CollectionSpec)
}

// Objects are ebpfnet's maps and programs, shared by every attached
// interface.
type Objects struct {
	counters   *ebpf.Map // PERCPU_ARRAY: row -> Counters
	interfaces *ebpf.Map // ARRAY: row -> InterfaceRow
	slots      *ebpf.Map // ARRAY: ifindex -> slot, for small ifindexes
	slotsHash  *ebpf.Map // HASH: ifindex -> slot, for the others
	meta       *ebpf.Map // ARRAY of one Meta
	slotMem    []byte    // slots' value, mapped
	progs      map[string]*ebpf.Program
	progIDs    map[string]uint32
	countersID uint32
	pin        *pinDir // with a pin path: locked for the Objects' life
	pinned     bool

	read counterReader
}

// pinnedMaps are the maps that make up pinned state; scratch and .rodata
// are the programs' own.
var pinnedMaps = []string{"counters", "interfaces", "slots", "slots_hash", "meta"}

// Load creates the maps with room for opts.MaxInterfaces interfaces, or,
// with a pin path, opens the ones pinned there (creating and pinning the
// missing ones), and loads the programs named in opts. A failure leaves
// nothing it made behind: no directory, mount or pin.
func Load(opts Options) (_ *Objects, err error) {
	spec, err := loadEbpfnet()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"counters", "interfaces", "slots_hash"} {
		spec.Maps[name].MaxEntries = uint32(opts.MaxInterfaces)
	}
	var (
		copts ebpf.CollectionOptions
		pin   *pinDir
	)
	if opts.PinPath != "" {
		if pin, err = preparePinPath(opts.PinPath); err != nil {
			return nil, err
		}
		before := pinsIn(pin.path)
		defer func() {
			if err != nil {
				pin.removeNewPins(before)
				pin.undo()
			}
		}()
		if err = checkPinnedLayout(pin.path); err != nil {
			return nil, err
		}
		copts.Maps.PinPath = pin.path
		for _, name := range pinnedMaps {
			spec.Maps[name].Pinning = ebpf.PinByName
		}
	}
	progs := map[string]*ebpf.ProgramSpec{}
	for _, name := range opts.Programs {
		ps, ok := spec.Programs[name]
		if !ok {
			return nil, fmt.Errorf("unknown program %q", name)
		}
		progs[name] = ps
	}
	spec.Programs = progs
	if opts.EditSpec != nil {
		opts.EditSpec(spec)
	}

	coll, err := ebpf.NewCollectionWithOptions(spec, copts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("%w: maps in %s (was max_interfaces changed? remove %s to start over): %v",
			ErrIncompatiblePin, opts.PinPath, opts.PinPath, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load ebpfnet: %w", err)
	}
	defer coll.Close()
	o := &Objects{
		counters:   coll.DetachMap("counters"),
		interfaces: coll.DetachMap("interfaces"),
		slots:      coll.DetachMap("slots"),
		slotsHash:  coll.DetachMap("slots_hash"),
		meta:       coll.DetachMap("meta"),
		progs:      map[string]*ebpf.Program{},
		progIDs:    map[string]uint32{},
		pin:        pin,
		pinned:     pin != nil,
	}
	defer func() {
		if err != nil {
			o.pin = nil // undone above
			o.Close()
		}
	}()
	for name := range progs {
		o.progs[name] = coll.DetachProgram(name)
		info, ierr := o.progs[name].Info()
		id, ok := ebpf.ProgramID(0), false
		if ierr == nil {
			id, ok = info.ID()
		}
		if !ok {
			return nil, fmt.Errorf("program %s: no ID from the kernel: %v", name, ierr)
		}
		o.progIDs[name] = uint32(id)
	}
	info, err := o.counters.Info()
	if err != nil {
		return nil, fmt.Errorf("counters map: %w", err)
	}
	id, _ := info.ID()
	o.countersID = uint32(id)
	if n := int(o.slots.MaxEntries()); n != DirectIfindexes {
		return nil, fmt.Errorf("slots map has %d entries, DirectIfindexes says %d", n, DirectIfindexes)
	}
	size := DirectIfindexes * slotSize
	if o.slotMem, err = unix.Mmap(o.slots.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("map slots into memory: %w", err)
	}
	return o, nil
}

// Program returns the loaded program of that name, or nil. It stays owned
// by o.
func (o *Objects) Program(name string) *ebpf.Program { return o.progs[name] }

// ProgramID returns the kernel's ID of the loaded program of that name, or 0.
func (o *Objects) ProgramID(name string) uint32 { return o.progIDs[name] }

// CountersID is the kernel's ID of the counters map: what every program of
// these Objects counts into, pinned or not. It names ebpfnet's tc filters,
// so that a filter counting into these counters is known as such whatever
// a row says.
func (o *Objects) CountersID() uint32 { return o.countersID }

// Pinned reports whether the maps are pinned.
func (o *Objects) Pinned() bool { return o.pinned }

// PinPath is where the maps are pinned, or "".
func (o *Objects) PinPath() string {
	if o.pin == nil {
		return ""
	}
	return o.pin.path
}

// MaxInterfaces is the number of counter rows.
func (o *Objects) MaxInterfaces() int { return int(o.counters.MaxEntries()) }

// Close releases the programs and maps. Pinned maps stay pinned, and
// programs stay loaded as long as a hook holds them.
func (o *Objects) Close() error {
	var errs []error
	if o.slotMem != nil {
		errs = append(errs, unix.Munmap(o.slotMem))
		o.slotMem = nil
	}
	for _, p := range o.progs {
		errs = append(errs, p.Close())
	}
	for _, m := range []*ebpf.Map{o.counters, o.interfaces, o.slots, o.slotsHash, o.meta} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if o.pin != nil && o.pin.lock != nil {
		errs = append(errs, o.pin.lock.Close())
		o.pin.lock = nil
	}
	return errors.Join(errs...)
}

// checkPinnedLayout refuses pinned state written under a layout this
// ebpfnet cannot take over, before Load creates or pins anything beside
// it: every used row of the pinned interfaces map says the layout it was
// written under. (Maps of another size are refused by the loader itself.)
func checkPinnedLayout(pinPath string) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, "interfaces"), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing pinned yet
	}
	if err != nil {
		return fmt.Errorf("pinned interfaces map in %s: %w", pinPath, err)
	}
	defer m.Close()
	// Rows of another layout may have another size: read them as bytes.
	size := int(m.ValueSize())
	if size < layoutOffset+4 {
		return fmt.Errorf("%w: %s holds rows of %d bytes", ErrIncompatiblePin, pinPath, size)
	}
	row := make([]byte, size)
	for i := uint32(0); i < m.MaxEntries(); i++ {
		if err := m.Lookup(i, &row); err != nil {
			return fmt.Errorf("read pinned interfaces row %d: %w", i, err)
		}
		ifindex := binary.NativeEndian.Uint32(row)
		layout := binary.NativeEndian.Uint32(row[layoutOffset:])
		if ifindex != 0 && layout != Layout && layout != PreviousLayout {
			return fmt.Errorf("%w: %s holds layout %d, this ebpfnet writes layout %d and takes over %d (remove %s to start over)",
				ErrIncompatiblePin, pinPath, layout, Layout, PreviousLayout, pinPath)
		}
	}
	return nil
}

// PreviousLayout is the layout this ebpfnet takes over pinned state from.
const PreviousLayout = 3
