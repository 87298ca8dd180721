// Package ifwatch follows the network namespace's interfaces through
// netlink and keeps the selected ones attached: a matching interface is
// attached as soon as it appears, and forgotten when it is removed, so
// container veth churn needs no restart.
package ifwatch

import (
	"errors"
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
	mgr   *attach.Manager
	match *config.Matcher
	log   *slog.Logger

	done chan struct{}
	wg   sync.WaitGroup

	full   map[int]bool   // interfaces already reported as over max_interfaces
	failed map[int]string // the attach error last logged, by interface
}

// Start attaches to every selected interface there is, detaches what was
// picked up from pins but is no longer selected, and then follows changes
// until Close. An interface that cannot be attached is logged (once, until
// its error changes) and counted, not returned; Start returns the first
// pass's other errors (listing, detaching), if any, but keeps watching all
// the same.
func Start(mgr *attach.Manager, match *config.Matcher, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{mgr: mgr, match: match, log: log, done: make(chan struct{}), full: map[int]bool{}, failed: map[int]string{}}
	// Subscribe before listing, so that nothing created in between is missed.
	updates, err := w.subscribe()
	if err != nil {
		return nil, err
	}
	n, err := w.sync()
	if n == 0 && err == nil {
		log.Warn("no interface matches the include patterns yet; attaching when one appears")
	}
	w.wg.Add(1)
	go w.loop(updates)
	return w, err
}

func (w *Watcher) subscribe() (<-chan netlink.LinkUpdate, error) {
	updates := make(chan netlink.LinkUpdate, 1024)
	err := netlink.LinkSubscribeWithOptions(updates, w.done, netlink.LinkSubscribeOptions{
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

// sync attaches every selected interface and detaches every other one.
func (w *Watcher) sync() (int, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return 0, err
	}
	var errs []error
	selected := map[int]bool{}
	for _, l := range links {
		if a := l.Attrs(); w.match.Match(a.Name) {
			selected[a.Index] = true
			w.report(a.Index, a.Name, w.attach(linkOf(a)))
		}
	}
	for _, a := range w.mgr.AppendAttached(nil) {
		if !selected[a.Index] {
			errs = append(errs, w.mgr.Detach(a.Index))
		}
	}
	return len(selected), errors.Join(errs...)
}

func (w *Watcher) loop(updates <-chan netlink.LinkUpdate) {
	defer w.wg.Done()
	for {
		for open := true; open; {
			select {
			case u, ok := <-updates:
				if open = ok; ok {
					w.handle(u)
				}
			case <-w.mgr.Freed():
				w.retryFull()
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
		delete(w.full, a.Index)
		err = w.mgr.Detach(a.Index)
	case w.match.Match(a.Name):
		err = w.attach(linkOf(a))
	default:
		// Renamed to a name that is not selected, or never selected.
		delete(w.full, a.Index)
		err = w.mgr.Detach(a.Index)
	}
	w.report(a.Index, a.Name, err)
	if u.Header.Type == unix.RTM_DELLINK {
		delete(w.failed, a.Index)
	}
}

// report logs an interface's attach error once, not at every netlink
// event that retries it: again only when it changes, or after a success.
func (w *Watcher) report(index int, name string, err error) {
	if err == nil {
		delete(w.failed, index)
		return
	}
	if msg := err.Error(); w.failed[index] != msg {
		w.failed[index] = msg
		w.log.Warn("interface not counted", "interface", name, "error", err)
	}
}

// retryFull attaches the interfaces refused for want of a row, now that
// one is free, as they are now (they may have been renamed meanwhile).
func (w *Watcher) retryFull() {
	for index := range w.full {
		l, err := netlink.LinkByIndex(index)
		if err != nil {
			delete(w.full, index)
			continue
		}
		a := l.Attrs()
		if !w.match.Match(a.Name) {
			delete(w.full, index)
			continue
		}
		if err := w.mgr.Attach(linkOf(a)); err == nil {
			delete(w.full, index)
			w.log.Info("counting interface refused earlier: a row is free", "interface", a.Name)
		} else if !errors.Is(err, attach.ErrFull) {
			delete(w.full, index)
			w.log.Warn("interface", "interface", a.Name, "error", err)
		}
	}
}

func linkOf(a *netlink.LinkAttrs) attach.Link {
	return attach.Link{Index: a.Index, Name: a.Name, Type: bpf.LinkOf(a.EncapType)}
}

// attach attaches, and reports an interface over max_interfaces only once.
func (w *Watcher) attach(l attach.Link) error {
	err := w.mgr.Attach(l)
	if err == nil {
		delete(w.full, l.Index)
	}
	if errors.Is(err, attach.ErrFull) {
		if !w.full[l.Index] {
			w.full[l.Index] = true
			w.log.Warn("not counting interface: max_interfaces reached", "interface", l.Name)
		}
		return nil
	}
	return err
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
