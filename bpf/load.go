package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Layout is the version of the maps' meaning, kept in every interfaces row.
// Bump it when a change keeps the maps' sizes but changes what they hold
// (the order of the classes, say), so that pinned state from an older
// ebpfnet is refused instead of mixed in.
//
// 2: one program for every interface, which finds its row in the slots maps.
// 3: each row records what ebpfnet owns on the interface's hooks (struct
// ebpfnet_owned).
//
// The layout field stays at byte 12 of a row in every layout, so that any
// version can tell which one pinned state was written under.
const Layout = 3

// layoutOffset is where a row of the interfaces map keeps its layout.
const layoutOffset = 12

// Program names in ebpfnet.c.
const (
	ProgramIngress = "ebpfnet_ingress"
	ProgramEgress  = "ebpfnet_egress"
	ProgramXDP     = "ebpfnet_xdp"
	// ProgramEmptyTC passes every packet without looking at it: the floor
	// the benchmarks measure the others against.
	ProgramEmptyTC = "ebpfnet_empty_tc"
)

// DirectIfindexes is how many ifindexes have their slot in the slots array
// (DIRECT_IFINDEXES in ebpfnet.c); higher ones go through a hash.
const DirectIfindexes = 16384

// Link is what a frame on an interface starts with, which says how the
// program parses it. The values match enum ebpfnet_link.
type Link uint32

const (
	LinkUnused   Link = iota // no interface: not counted
	LinkEthernet             // an Ethernet header
	LinkIP                   // an IP header: tun, WireGuard, ipip, sit, ...
	LinkOther                // counted, never classified
)

// LinkOf returns the Link for an interface whose link-layer type netlink
// names encap (vishvananda/netlink's LinkAttrs.EncapType, from ARPHRD_*).
func LinkOf(encap string) Link {
	switch encap {
	case "ether", "loopback":
		return LinkEthernet
	// Devices without a link-layer header: tun and WireGuard (ARPHRD_NONE),
	// ipip, ip6tnl, sit, and the raw-IP modems (ARPHRD_RAWIP, 519).
	case "none", "ipip", "tunnel6", "sit", "unknown519":
		return LinkIP
	}
	// gre in NBMA mode, InfiniBand, PPP, CAN, ...: their frames are not
	// read, so never misread.
	return LinkOther
}

func (l Link) String() string {
	switch l {
	case LinkEthernet:
		return "ethernet"
	case LinkIP:
		return "ip"
	case LinkOther:
		return "other"
	}
	return "unused"
}

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
}

// Objects are ebpfnet's maps and programs, shared by every attached
// interface.
type Objects struct {
	counters   *ebpf.Map // PERCPU_ARRAY: row -> Counters
	interfaces *ebpf.Map // ARRAY: row -> Interface
	slots      *ebpf.Map // ARRAY: ifindex -> slot, for small ifindexes
	slotsHash  *ebpf.Map // HASH: ifindex -> slot, for the others
	slotMem    []byte    // slots' value, mapped
	progs      map[string]*ebpf.Program
	progIDs    map[string]uint32
	lock       *os.File // held on the pin path for the Objects' life
	pinned     bool

	readMu   sync.Mutex // guards the buffers ReadCounters reuses
	perCPU   []Counters
	keys     []uint32
	batchOut uint32
}

// pinned are the maps that make up pinned state; scratch and .rodata are
// the programs' own.
var pinned = []string{"counters", "interfaces", "slots", "slots_hash"}

// Load creates the maps with room for opts.MaxInterfaces interfaces, or,
// with a pin path, opens the ones pinned there (creating and pinning them
// the first time), and loads the programs named in opts.
func Load(opts Options) (_ *Objects, err error) {
	var lock *os.File
	spec, err := loadEbpfnet()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"counters", "interfaces", "slots_hash"} {
		spec.Maps[name].MaxEntries = uint32(opts.MaxInterfaces)
	}
	var copts ebpf.CollectionOptions
	if opts.PinPath != "" {
		if err := ensureBPFFS(opts.PinPath); err != nil {
			return nil, err
		}
		if lock, err = lockPinPath(opts.PinPath); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				lock.Close()
			}
		}()
		if err = checkPinnedLayout(opts.PinPath); err != nil {
			return nil, err
		}
		copts.Maps.PinPath = opts.PinPath
		for _, name := range pinned {
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
	variant(spec)

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
		progs:      map[string]*ebpf.Program{},
		progIDs:    map[string]uint32{},
		lock:       lock,
		pinned:     lock != nil,
	}
	for name := range progs {
		o.progs[name] = coll.DetachProgram(name)
		info, ierr := o.progs[name].Info()
		id, ok := ebpf.ProgramID(0), false
		if ierr == nil {
			id, ok = info.ID()
		}
		if !ok {
			o.Close()
			return nil, fmt.Errorf("program %s: no ID from the kernel: %v", name, ierr)
		}
		o.progIDs[name] = uint32(id)
	}
	if n := int(o.slots.MaxEntries()); n != DirectIfindexes {
		o.Close()
		return nil, fmt.Errorf("slots map has %d entries, DirectIfindexes says %d", n, DirectIfindexes)
	}
	size := DirectIfindexes * slotSize
	if o.slotMem, err = unix.Mmap(o.slots.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		o.Close()
		return nil, fmt.Errorf("map slots into memory: %w", err)
	}
	return o, nil
}

// Program returns the loaded program of that name, or nil. It stays owned
// by o.
func (o *Objects) Program(name string) *ebpf.Program { return o.progs[name] }

// ProgramID returns the kernel's ID of the loaded program of that name, or 0.
func (o *Objects) ProgramID(name string) uint32 { return o.progIDs[name] }

// Pinned reports whether the maps are pinned.
func (o *Objects) Pinned() bool { return o.pinned }

// MaxInterfaces is the number of counter rows.
func (o *Objects) MaxInterfaces() int { return int(o.counters.MaxEntries()) }

// slotSize is the size of struct ebpfnet_slot, which an array map lays out
// without padding between entries (a multiple of 8 already).
const slotSize = int(unsafe.Sizeof(ebpfnetEbpfnetSlot{}))

// SetSlot tells the programs to count frames on ifindex in row, parsing
// them as link says. LinkUnused stops counting them.
func (o *Objects) SetSlot(ifindex int, row uint32, link Link) error {
	if ifindex <= 0 {
		return fmt.Errorf("set slot: bad ifindex %d", ifindex)
	}
	if ifindex < DirectIfindexes {
		// One 8-byte store: a program reads the row and the link of the
		// same write, never half of each.
		p := (*uint64)(unsafe.Pointer(&o.slotMem[ifindex*slotSize]))
		atomic.StoreUint64(p, uint64(row)|uint64(link)<<32)
		return nil
	}
	key := uint32(ifindex)
	if link == LinkUnused {
		if err := o.slotsHash.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear slot of ifindex %d: %w", ifindex, err)
		}
		return nil
	}
	if err := o.slotsHash.Update(key, ebpfnetEbpfnetSlot{Row: row, Link: uint32(link)}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set slot of ifindex %d: %w", ifindex, err)
	}
	return nil
}

// Slot returns the row and link the programs use for ifindex.
func (o *Objects) Slot(ifindex int) (row uint32, link Link, err error) {
	if ifindex <= 0 {
		return 0, LinkUnused, nil
	}
	if ifindex < DirectIfindexes {
		v := atomic.LoadUint64((*uint64)(unsafe.Pointer(&o.slotMem[ifindex*slotSize])))
		return uint32(v), Link(v >> 32), nil
	}
	var s ebpfnetEbpfnetSlot
	err = o.slotsHash.Lookup(uint32(ifindex), &s)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, LinkUnused, nil
	}
	return s.Row, Link(s.Link), err
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
func (o *Objects) ReadInterfaces() ([]Interface, error) {
	return readInterfaces(o.interfaces)
}

func readInterfaces(m *ebpf.Map) ([]Interface, error) {
	rows := make([]Interface, m.MaxEntries())
	for i := range rows {
		if err := m.Lookup(uint32(i), &rows[i]); err != nil {
			return nil, fmt.Errorf("read interfaces row %d: %w", i, err)
		}
	}
	return rows, nil
}

// WriteInterface stores r at row.
func (o *Objects) WriteInterface(row uint32, r *Interface) error {
	if err := o.interfaces.Update(row, r, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write interfaces row %d: %w", row, err)
	}
	return nil
}

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
	for _, m := range []*ebpf.Map{o.counters, o.interfaces, o.slots, o.slotsHash} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if o.lock != nil {
		errs = append(errs, o.lock.Close())
		o.lock = nil
	}
	return errors.Join(errs...)
}

// checkPinnedLayout refuses pinned state written under another layout,
// before Load creates or pins anything beside it: every used row of the
// pinned interfaces map says the layout it was written under. (Maps of
// another size are refused by the loader itself.)
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
		if ifindex != 0 && layout != Layout {
			return fmt.Errorf("%w: %s holds layout %d, this ebpfnet writes layout %d (remove %s to start over)",
				ErrIncompatiblePin, pinPath, layout, Layout, pinPath)
		}
	}
	return nil
}

// ClearSlots clears every slot that keep does not want kept, given its
// ifindex and row: after a restart, slots that no interfaces row accounts
// for.
func (o *Objects) ClearSlots(keep func(ifindex int, row uint32) bool) error {
	var errs []error
	for ifindex := 1; ifindex < DirectIfindexes; ifindex++ {
		row, link, _ := o.Slot(ifindex)
		if link != LinkUnused && !keep(ifindex, row) {
			errs = append(errs, o.SetSlot(ifindex, 0, LinkUnused))
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
		errs = append(errs, o.SetSlot(ifindex, 0, LinkUnused))
	}
	return errors.Join(errs...)
}
