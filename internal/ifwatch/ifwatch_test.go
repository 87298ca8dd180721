//go:build linux

package ifwatch

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// fakeManager records what the Watcher asks of it; rows is how many
// interfaces it takes before it refuses.
type fakeManager struct {
	mu       sync.Mutex
	rows     int
	attached map[int]string
	refused  []int
	freed    chan struct{}
	calls    []string
}

func newFakeManager(rows int) *fakeManager {
	return &fakeManager{rows: rows, attached: map[int]string{}, freed: make(chan struct{}, 1)}
}

func (m *fakeManager) Attach(d attach.NetDev) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf("attach %d %s", d.Index, d.Name))
	if _, ok := m.attached[d.Index]; !ok && len(m.attached) == m.rows {
		if !slices.Contains(m.refused, d.Index) {
			m.refused = append(m.refused, d.Index)
		}
		return fmt.Errorf("no row for %s", d.Name)
	}
	m.attached[d.Index] = d.Name
	m.refused = slices.DeleteFunc(m.refused, func(i int) bool { return i == d.Index })
	return nil
}

func (m *fakeManager) Detach(index int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf("detach %d", index))
	m.refused = slices.DeleteFunc(m.refused, func(i int) bool { return i == index })
	if _, ok := m.attached[index]; ok {
		delete(m.attached, index)
		select {
		case m.freed <- struct{}{}:
		default:
		}
	}
	return nil
}

func (m *fakeManager) AppendAttached(dst []attach.Interface) []attach.Interface {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, name := range m.attached {
		dst = append(dst, attach.Interface{Index: i, Name: name})
	}
	return dst
}

func (m *fakeManager) Refused() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.refused)
}

func (m *fakeManager) Freed() <-chan struct{} { return m.freed }
func (m *fakeManager) DetachOnPanic()         {}

func (m *fakeManager) state() (map[int]string, []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int]string{}
	for k, v := range m.attached {
		out[k] = v
	}
	return out, slices.Clone(m.refused)
}

// fakeLinks is a namespace's interfaces and a subscription the test feeds.
type fakeLinks struct {
	mu      sync.Mutex
	links   map[int]netlink.Link
	updates chan<- netlink.LinkUpdate
	subs    int
	ready   chan struct{}
}

func veth(index int, name string, nsid, peer int) netlink.Link {
	return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: index, Name: name, NetNsID: nsid, ParentIndex: peer, EncapType: "ether"}}
}

func (f *fakeLinks) set(l netlink.Link) {
	f.mu.Lock()
	f.links[l.Attrs().Index] = l
	f.mu.Unlock()
}

func (f *fakeLinks) source() links {
	return links{
		list: func() ([]netlink.Link, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			var out []netlink.Link
			for _, l := range f.links {
				out = append(out, l)
			}
			return out, nil
		},
		byIndex: func(i int) (netlink.Link, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if l, ok := f.links[i]; ok {
				return l, nil
			}
			return nil, fmt.Errorf("no link %d", i)
		},
		subscribe: func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, _ netlink.LinkSubscribeOptions) error {
			f.mu.Lock()
			f.updates, f.subs = ch, f.subs+1
			f.mu.Unlock()
			// As netlink's: closing done closes the socket, and so the
			// channel.
			go func() {
				<-done
				f.end(ch)
			}()
			f.ready <- struct{}{}
			return nil
		},
	}
}

// end ends the subscription ch, unless it has ended already.
func (f *fakeLinks) end(ch chan<- netlink.LinkUpdate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updates == ch {
		close(ch)
		f.updates = nil
	}
}

// event changes the namespace and sends the kernel's notice of it.
func (f *fakeLinks) event(typ uint16, l netlink.Link) {
	f.mu.Lock()
	if typ == unix.RTM_DELLINK {
		delete(f.links, l.Attrs().Index)
	} else {
		f.links[l.Attrs().Index] = l
	}
	ch := f.updates
	f.mu.Unlock()
	ch <- netlink.LinkUpdate{Header: unix.NlMsghdr{Type: typ}, Link: l}
}

// fakePeers records where the Watcher said each interface's peer is.
type fakePeers struct {
	mu    sync.Mutex
	links map[int][2]int
}

func (p *fakePeers) SetLink(ifindex int, _ string, nsid, peer int) {
	p.mu.Lock()
	p.links[ifindex] = [2]int{nsid, peer}
	p.mu.Unlock()
}

func (p *fakePeers) ForgetLink(ifindex int) {
	p.mu.Lock()
	delete(p.links, ifindex)
	p.mu.Unlock()
}

func (p *fakePeers) get(ifindex int) ([2]int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.links[ifindex]
	return v, ok
}

// Without a kernel: what is selected is attached at start and as it
// appears, renamed away or deleted it is detached, what pinned state left
// attached but is not selected is detached, a refused interface is
// attached when a row is freed (as it is named then), and the peers hear
// of every selected interface's peer.
func TestWatcherFollowsTheInterfaces(t *testing.T) {
	in := config.Interfaces{Include: []string{"veth*"}}
	match, err := in.Matcher()
	if err != nil {
		t.Fatal(err)
	}
	mgr := newFakeManager(2)
	mgr.attached[9] = "vethold" // adopted from pins, no longer there
	f := &fakeLinks{links: map[int]netlink.Link{}, ready: make(chan struct{}, 4)}
	f.set(veth(1, "lo", -1, 0))
	f.set(veth(5, "veth5", 3, 2))
	peers := &fakePeers{links: map[int][2]int{}}
	w, err := watch(mgr, f.source(), match, peers, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	<-f.ready

	if got, _ := mgr.state(); !maps(got, map[int]string{5: "veth5"}) {
		t.Fatalf("at start, attached %v; want veth5 only (lo not selected, vethold gone)", got)
	}
	if p, ok := peers.get(5); !ok || p != [2]int{3, 2} {
		t.Errorf("peers of veth5: %v, %v; want nsid 3, peer 2", p, ok)
	}

	f.event(unix.RTM_NEWLINK, veth(6, "veth6", 4, 2))
	f.event(unix.RTM_NEWLINK, veth(7, "veth7", 5, 2)) // no row left: refused
	testenv.WaitFor(t, "veth6 attached and veth7 refused", func() bool {
		got, refused := mgr.state()
		return maps(got, map[int]string{5: "veth5", 6: "veth6"}) && slices.Equal(refused, []int{7})
	})

	// veth7 is renamed while it waits, still selected; veth5 is renamed
	// away, which frees a row for it.
	f.set(veth(7, "veth7b", 5, 2))
	f.event(unix.RTM_NEWLINK, veth(5, "eth5", 3, 2))
	testenv.WaitFor(t, "veth5 detached, veth7 attached under its new name", func() bool {
		got, refused := mgr.state()
		return maps(got, map[int]string{6: "veth6", 7: "veth7b"}) && len(refused) == 0
	})
	if _, ok := peers.get(5); ok {
		t.Error("the peers still know veth5, renamed away")
	}

	f.event(unix.RTM_DELLINK, veth(6, "veth6", 4, 2))
	testenv.WaitFor(t, "veth6 detached", func() bool {
		got, _ := mgr.state()
		return maps(got, map[int]string{7: "veth7b"})
	})
	if _, ok := peers.get(6); ok {
		t.Error("the peers still know veth6, deleted")
	}

	// The subscription ends (ENOBUFS after a burst): events were lost, so
	// the Watcher subscribes again and lists everything.
	f.mu.Lock()
	ch := f.updates
	f.links[8] = veth(8, "veth8", 6, 2)
	f.mu.Unlock()
	f.end(ch)
	<-f.ready
	testenv.WaitFor(t, "veth8, created while no one listened, attached on the resync", func() bool {
		got, _ := mgr.state()
		return got[8] == "veth8"
	})
}

func maps(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
