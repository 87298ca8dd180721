//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// benchAttach measures how long interfaces wait to be counted: at start
// with 1000 of them, in a burst of 300 new ones, and one new interface at
// a time; and which kernel objects attaching creates. The baseline is the
// previous design's cost, measured in the same run: loading and verifying
// the program, once per interface and direction.
func benchAttach() (string, error) {
	peers, err := testenv.CreateNetns()
	if err != nil {
		return "", err
	}
	defer peers.Close()
	var b strings.Builder

	load, err := loadCost()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "Loading and verifying one copy of the program (the previous design did it per interface and direction; median of 20): %s.\n\n", dur(load.Nanoseconds()))

	const start = 1000
	if err := addVeths(peers, "bs", start); err != nil {
		return "", err
	}
	b.WriteString("| measurement | attach mode | ebpfnet | previous design (estimated: loads x load cost) | target |\n| --- | --- | ---: | ---: | --- |\n")
	var objects string
	for _, mode := range []string{config.AttachTCX, config.AttachTC} {
		before, err := countObjects()
		if err != nil {
			return "", err
		}
		t0 := time.Now()
		d, err := open(mode, "bs*", start+24)
		if err != nil {
			return "", err
		}
		took := time.Since(t0)
		var s snapshot.Snapshot
		if err := d.Snapshot(&s); err != nil || len(s.Interfaces) != start {
			d.Close()
			return "", fmt.Errorf("%s: %d interfaces attached after start, want %d (%v)", mode, len(s.Interfaces), start, err)
		}
		after, err := countObjects()
		if err != nil {
			d.Close()
			return "", err
		}
		fmt.Fprintf(&b, "| start with %d interfaces: all attached | %s | %s | %s | at most 1 s |\n", start, mode, dur(took.Nanoseconds()), dur(2*start*load.Nanoseconds()))
		if mode == config.AttachTCX {
			objects = fmt.Sprintf("Kernel objects that %d attached interfaces (tcx, both directions) added: %s. "+
				"The previous design added 2 programs and 2 .rodata maps per interface.\n",
				start, after.sub(before))
		}
		if err := d.Close(); err != nil {
			return "", err
		}
	}
	if err := delVeths("bs", start); err != nil {
		return "", err
	}

	// A burst: 300 interfaces created as fast as netlink allows, while
	// ebpfnet runs.
	const burst = 300
	d, err := open(config.AttachAuto, "bb*", burst+24)
	if err != nil {
		return "", err
	}
	created, seen, err := watchAttach(d, func(created map[string]time.Time) error {
		return addVethsTimed(peers, "bb", burst, created)
	})
	d.Close()
	if err != nil {
		return "", err
	}
	var lastCreated, lastSeen time.Time
	var lat []time.Duration
	for name, c := range created {
		lastCreated = maxTime(lastCreated, c)
		lastSeen = maxTime(lastSeen, seen[name])
		lat = append(lat, seen[name].Sub(c))
	}
	fmt.Fprintf(&b, "| burst of %d new veths: last one counted after the last was created | auto (tcx) | %s | %s | at most 1 s |\n",
		burst, dur(lastSeen.Sub(lastCreated).Nanoseconds()), dur(2*burst*load.Nanoseconds()))
	fmt.Fprintf(&b, "| burst of %d: each interface, creation to counted (p50 / p99 / max) | auto (tcx) | %s | | |\n", burst, percentiles(lat))
	if err := delVeths("bb", burst); err != nil {
		return "", err
	}

	// One new interface at a time.
	const single = 100
	d, err = open(config.AttachAuto, "b1*", single+24)
	if err != nil {
		return "", err
	}
	lat = lat[:0]
	for i := range single {
		name := fmt.Sprintf("b1%04d", i)
		c, s, err := watchAttach(d, func(created map[string]time.Time) error {
			return addVethTimed(peers, name, fmt.Sprintf("p1%04d", i), created)
		})
		if err != nil {
			d.Close()
			return "", err
		}
		lat = append(lat, s[name].Sub(c[name]))
	}
	d.Close()
	if err := delVeths("b1", single); err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "| one new interface, creation to counted (p50 / p99 / max of %d) | auto (tcx) | %s | %s | p99 at most 10 ms |\n\n",
		single, percentiles(lat), dur(2*load.Nanoseconds()))
	b.WriteString(objects)
	b.WriteString("\"Counted\" is the moment a snapshot lists the interface: its slot is set and its hooks attached. Creation is when the kernel acknowledged the new veth pair.\n")
	return b.String(), nil
}

func open(mode, include string, max int) (*datapath.Datapath, error) {
	cfg := config.Default()
	cfg.Attach = mode
	cfg.Interfaces.Include = []string{include}
	cfg.MaxInterfaces = max
	return datapath.Open(cfg, nil)
}

// loadCost is the median time to load and verify the ingress program.
func loadCost() (time.Duration, error) {
	var ds []time.Duration
	for range 20 {
		t0 := time.Now()
		o, err := bpf.Load(bpf.Options{MaxInterfaces: 1, Programs: []string{bpf.ProgramIngress}})
		if err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
		o.Close()
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// watchAttach runs create, which records when it made each interface, and
// polls d until every one is counted, recording when each first was.
// Interfaces counted before create began are not recorded.
func watchAttach(d *datapath.Datapath, create func(map[string]time.Time) error) (created, seen map[string]time.Time, err error) {
	var s snapshot.Snapshot
	if err := d.Snapshot(&s); err != nil {
		return nil, nil, err
	}
	already := map[string]bool{}
	for _, i := range s.Interfaces {
		already[i.Name] = true
	}
	created, seen = map[string]time.Time{}, map[string]time.Time{}
	done := make(chan error, 1)
	go func() { done <- create(created) }()
	deadline := time.Now().Add(2 * time.Minute)
	finished := false
	for {
		if err := d.Snapshot(&s); err != nil {
			return nil, nil, err
		}
		now := time.Now()
		for _, i := range s.Interfaces {
			if _, ok := seen[i.Name]; !ok && !already[i.Name] {
				seen[i.Name] = now
			}
		}
		if !finished {
			select {
			case err := <-done:
				if err != nil {
					return nil, nil, err
				}
				finished = true // created is complete, and ours to read
			default:
			}
		}
		if finished && len(seen) >= len(created) {
			return created, seen, nil
		}
		if now.After(deadline) {
			return nil, nil, fmt.Errorf("%d interfaces counted after 2 minutes", len(seen))
		}
	}
}

func addVeths(peers netns.NsHandle, prefix string, n int) error {
	return addVethsTimed(peers, prefix, n, map[string]time.Time{})
}

func addVethsTimed(peers netns.NsHandle, prefix string, n int, created map[string]time.Time) error {
	for i := range n {
		if err := addVethTimed(peers, fmt.Sprintf("%s%04d", prefix, i), fmt.Sprintf("p%s%04d", prefix[1:], i), created); err != nil {
			return err
		}
	}
	return nil
}

func addVethTimed(peers netns.NsHandle, name, peer string, created map[string]time.Time) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(peers)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	created[name] = time.Now()
	return nil
}

func delVeths(prefix string, n int) error {
	var errs []error
	for i := range n {
		name := fmt.Sprintf("%s%04d", prefix, i)
		if l, err := netlink.LinkByName(name); err == nil {
			errs = append(errs, netlink.LinkDel(l))
		}
	}
	return errors.Join(errs...)
}

func percentiles(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("%s / %s / %s", dur(at(0.5).Nanoseconds()), dur(at(0.99).Nanoseconds()), dur(s[len(s)-1].Nanoseconds()))
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// objects counts the kernel's BPF programs, maps and links.
type objects struct{ programs, maps, links int }

func (o objects) sub(p objects) string {
	return fmt.Sprintf("%d programs, %d maps, %d links", o.programs-p.programs, o.maps-p.maps, o.links-p.links)
}

func countObjects() (objects, error) {
	var o objects
	for id := ebpf.ProgramID(0); ; o.programs++ {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		} else if err != nil {
			return o, err
		}
		id = next
	}
	for id := ebpf.MapID(0); ; o.maps++ {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		} else if err != nil {
			return o, err
		}
		id = next
	}
	var it link.Iterator
	for it.Next() {
		o.links++
	}
	return o, it.Err()
}
