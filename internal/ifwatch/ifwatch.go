//go:build linux

// Package ifwatch follows the network namespace's interfaces through
// netlink and keeps the selected ones attached: a matching interface is
// attached as soon as it appears, and forgotten when it is removed, so
// container veth churn needs no restart.
package ifwatch

import (
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
)

// Watcher keeps the manager's attachments in line with the interfaces.
type Watcher struct {
	mgr   manager
	links links
	match *config.Matcher
	log   *slog.Logger
	peers Peers // told of each selected interface's peer namespace, or nil

	done chan struct{}
	wg   sync.WaitGroup
}

// manager is what the Watcher asks of an *attach.Manager (a fake in the
// unit tests).
type manager interface {
	Attach(attach.NetDev) error
	Detach(index int) error
	AppendAttached([]attach.Interface) []attach.Interface
	Refused() []int
	Freed() <-chan struct{}
	DetachOnPanic()
}

// links is where the interfaces come from: netlink, or a fake.
type links struct {
	list      func() ([]netlink.Link, error)
	byIndex   func(int) (netlink.Link, error)
	subscribe func(chan<- netlink.LinkUpdate, <-chan struct{}, netlink.LinkSubscribeOptions) error
}

var kernelLinks = links{list: netlink.LinkList, byIndex: netlink.LinkByIndex, subscribe: netlink.LinkSubscribeWithOptions}

// Peers is told where each selected interface's peer is: the pod index
// (internal/pods) names a pod's host veth by it.
type Peers interface {
	// SetLink: the interface's peer is ifindex peer in namespace nsid
	// (IFLA_LINK_NETNSID, -1 where it has none).
	SetLink(ifindex int, name string, nsid, peer int)
	ForgetLink(ifindex int)
}

// Watch attaches to every selected interface there is, detaches what was
// picked up from pins but is no longer selected, and then follows changes
// until Close; peers, if not nil, hears of each. An interface that cannot
// be attached is the manager's to report (counted and logged once); Watch
// fails only when it cannot listen to netlink or list the interfaces at
// all.
func Watch(mgr *attach.Manager, match *config.Matcher, peers Peers, log *slog.Logger) (*Watcher, error) {
	return watch(mgr, kernelLinks, match, peers, log)
}

func watch(mgr manager, links links, match *config.Matcher, peers Peers, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{mgr: mgr, links: links, match: match, peers: peers, log: log, done: make(chan struct{})}
	// Subscribe before listing, so that nothing created in between is missed.
	updates, err := w.subscribe()
	if err != nil {
		return nil, err
	}
	n, err := w.sync()
	if err != nil {
		close(w.done) // ends the subscription
		return nil, err
	}
	if n == 0 {
		log.Warn("no interface matches the include patterns yet; attaching when one appears")
	}
	w.wg.Add(1)
	go w.loop(updates)
	return w, nil
}

func (w *Watcher) subscribe() (<-chan netlink.LinkUpdate, error) {
	updates := make(chan netlink.LinkUpdate, 1024)
	err := w.links.subscribe(updates, w.done, netlink.LinkSubscribeOptions{
		ReceiveBufferSize: 1 << 20,
		ErrorCallback: func(err error) {
			select {
			case <-w.done: // the socket was closed by Close
			default:
				w.log.Warn("interface watch interrupted; listing interfaces again", "error", err)
			}
		},
	})
	return updates, err
}

// sync attaches every selected interface and detaches every other one,
// and says how many are selected.
func (w *Watcher) sync() (int, error) {
	list, err := w.links.list()
	if err != nil {
		return 0, err
	}
	selected := map[int]bool{}
	for _, l := range list {
		if a := l.Attrs(); w.match.Match(a.Name) {
			selected[a.Index] = true
			w.attach(a)
		}
	}
	for _, a := range w.mgr.AppendAttached(nil) {
		if !selected[a.Index] {
			if err := w.detach(a.Index); err != nil {
				w.log.Warn("detach interface no longer selected", "interface", a.Name, "error", err)
			}
		}
	}
	return len(selected), nil
}

func (w *Watcher) loop(updates <-chan netlink.LinkUpdate) {
	defer w.wg.Done()
	defer w.mgr.DetachOnPanic()
	for {
		for open := true; open; {
			select {
			case u, ok := <-updates:
				if open = ok; ok {
					w.handle(u)
				}
			case <-w.mgr.Freed():
				w.retryRefused()
			}
		}
		// The subscription ended: Close, or a receive error such as
		// ENOBUFS after a burst of events. Then events were lost, so
		// subscribe again and list everything.
		for {
			select {
			case <-w.done:
				return
			default:
			}
			var err error
			if updates, err = w.subscribe(); err == nil {
				if _, err := w.sync(); err != nil {
					w.log.Warn("resync interfaces", "error", err)
				}
				break
			}
			w.log.Warn("interface watch", "error", err)
			select {
			case <-w.done:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (w *Watcher) handle(u netlink.LinkUpdate) {
	a := u.Link.Attrs()
	var err error
	switch {
	case u.Header.Type == unix.RTM_DELLINK:
		err = w.detach(a.Index)
	case w.match.Match(a.Name):
		w.attach(a)
	default:
		// Renamed to a name that is not selected, or never selected.
		err = w.detach(a.Index)
	}
	if err != nil {
		w.log.Warn("detach interface", "interface", a.Name, "error", err)
	}
}

// retryRefused attaches the interfaces refused for want of a row, now that
// one is free, as they are now (they may have been renamed meanwhile).
func (w *Watcher) retryRefused() {
	for _, index := range w.mgr.Refused() {
		l, err := w.links.byIndex(index)
		if err != nil || !w.match.Match(l.Attrs().Name) {
			_ = w.mgr.Detach(index) // forgets the refusal
			continue
		}
		if w.attach(l.Attrs()) == nil {
			w.log.Info("counting interface refused earlier: a row is free", "interface", l.Attrs().Name)
		}
	}
}

// attach attaches a selected interface (the manager reports failures) and
// tells peers where its peer is.
func (w *Watcher) attach(a *netlink.LinkAttrs) error {
	err := w.mgr.Attach(netDev(a))
	if w.peers != nil {
		w.peers.SetLink(a.Index, a.Name, a.NetNsID, a.ParentIndex)
	}
	return err
}

func (w *Watcher) detach(index int) error {
	if w.peers != nil {
		w.peers.ForgetLink(index)
	}
	return w.mgr.Detach(index)
}

func netDev(a *netlink.LinkAttrs) attach.NetDev {
	return attach.NetDev{Index: a.Index, Name: a.Name, Framing: bpf.FramingOf(a.EncapType)}
}

// Close stops watching. Attachments stay; the manager owns them.
func (w *Watcher) Close() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}
