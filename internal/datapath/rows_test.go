package datapath

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// A snapshot never pairs a row with an interface it no longer belongs to:
// with interfaces churning under the same names and snapshots taken as
// fast as they come, no cumulative value goes down under an unchanged
// start time. Every interface made is seen by the snapshots with the
// traffic sent to it before it goes, so the check covers each of them.
func TestSnapshotsAreConsistentUnderChurn(t *testing.T) {
	testenv.Privileged(t)
	d := open(t, cfgFor(config.AttachAuto, "snap*"))
	type key struct {
		name  string
		start time.Time
	}
	const rounds, perRound = 30, 3
	var (
		stop atomic.Bool
		mu   sync.Mutex // guards what follows, shared with the test
		bad  []string
		seen = map[key]uint64{} // each interface's packets in the latest snapshot that had it
		// snapshots taken, and those with an interface in them
		scraped, withInterfaces int
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := map[key]uint64{}
		var s snapshot.Snapshot
		for !stop.Load() {
			err := d.Snapshot(&s)
			mu.Lock()
			if err != nil {
				bad = append(bad, err.Error())
				mu.Unlock()
				return
			}
			scraped++
			if len(s.Interfaces) > 0 {
				withInterfaces++
			}
			for _, i := range s.Interfaces {
				k := key{i.Name, i.Start}
				n := i.Counters.Total(bpf.Receive).Packets + i.Counters.Total(bpf.Transmit).Packets
				if n < last[k] && len(bad) < 5 {
					bad = append(bad, fmt.Sprintf("%s (start %v) went from %d to %d", i.Name, i.Start, last[k], n))
				}
				last[k] = n
				seen[k] = n
			}
			mu.Unlock()
		}
	}()
	defer func() { stop.Store(true); <-done }()
	for round := range rounds {
		var pairs []*testenv.Pair
		for i := range perRound {
			p, err := testenv.CreatePair(fmt.Sprintf("snap%d", i))
			if err != nil {
				t.Fatal(err)
			}
			pairs = append(pairs, p)
		}
		for _, p := range pairs {
			var k key
			testenv.WaitFor(t, "attach", func() bool {
				i := snap(t, d).Find(p.Local)
				if i != nil {
					k = key{i.Name, i.Start}
				}
				return i != nil
			})
			n := 5 + round%7
			p.SendUDP(t, false, true, n, payload)
			testenv.WaitFor(t, fmt.Sprintf("the snapshots to see %s's %d packets", p.Local, n), func() bool {
				mu.Lock()
				defer mu.Unlock()
				return seen[k] >= uint64(n) || len(bad) > 0
			})
		}
		for _, p := range pairs {
			p.Close()
		}
	}
	stop.Store(true)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("after %d snapshots: %s", scraped, strings.Join(bad, "; "))
	}
	// What was checked: every interface made, and at least one snapshot
	// with interfaces in it per round.
	if len(seen) < rounds*perRound || withInterfaces < rounds {
		t.Errorf("the snapshots saw %d interfaces, in %d of %d snapshots; want all %d made, in at least %d snapshots", len(seen), withInterfaces, scraped, rounds*perRound, rounds)
	}
	t.Logf("%d snapshots, %d with interfaces, of %d interfaces", scraped, withInterfaces, len(seen))
}

// An interface refused for want of a row is attached as soon as one frees,
// without any event of its own.
func TestRefusedInterfaceAttachedWhenARowFrees(t *testing.T) {
	testenv.Privileged(t)
	for _, mode := range []string{config.AttachTCX, config.AttachTC, config.AttachXDP} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			a := testenv.NewPair(t, "full"+mode+"a")
			b := testenv.NewPair(t, "full"+mode+"b")
			cfg := cfgFor(mode, a.Local, b.Local)
			cfg.MaxInterfaces = 1
			d := open(t, cfg)
			s := snap(t, d)
			if len(s.Interfaces) != 1 || s.Interfaces[0].Name != a.Local {
				t.Fatalf("attached %+v, want %s alone", s.Interfaces, a.Local)
			}
			a.Close()
			testenv.WaitFor(t, b.Local+" to be attached", func() bool { return snap(t, d).Find(b.Local) != nil })
			testenv.WaitQuiet(t, b.Local, 300*time.Millisecond)
			kbase := testenv.LinkStats(t, b.Local)
			base := counters(t, d, b.Local)
			b.SendUDP(t, false, true, 12, payload)
			waitTotals(t, d, b, mode, base, kbase, directions(mode)...)
		})
	}
}

// An interface deleted and created again under the same name starts a new
// series: a new start time, counts from zero.
func TestRecreatedInterfaceGetsANewStartTime(t *testing.T) {
	testenv.Privileged(t)
	d := open(t, cfgFor(config.AttachAuto, "again0"))
	p := testenv.NewPair(t, "again0")
	testenv.WaitFor(t, "attach", func() bool { return snap(t, d).Find(p.Local) != nil })
	p.SendUDP(t, false, true, 10, payload)
	testenv.WaitFor(t, "counts", func() bool {
		c := counters(t, d, p.Local)
		return c.Total(bpf.Receive).Packets >= 10
	})
	first := snap(t, d).Find(p.Local).Start
	p.Close()
	testenv.WaitFor(t, "detach", func() bool { return snap(t, d).Find("again0") == nil })
	q := testenv.NewPair(t, "again0")
	testenv.WaitFor(t, "attach again", func() bool { return snap(t, d).Find(q.Local) != nil })
	i := snap(t, d).Find(q.Local)
	if !i.Start.After(first) {
		t.Errorf("re-created interface's start %v, first one's %v: want a later one", i.Start, first)
	}
	if n := i.Counters.Total(bpf.Receive).Packets; n > 2 {
		t.Errorf("re-created interface starts at %d packets received", n)
	}
}
